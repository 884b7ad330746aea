// Posterior sampling of files, the job behind `unwedge sample` (and the Python API): draws from a
// posterior model (cryowgen-mc, cryowgen-langevin) over a tomogram or a pair of halves, tiled and
// streamed like restoration. Writes, in out_dir, the posterior mean, std and credible-interval
// bounds (input scale and header), the draws (save_samples), summary.json (ESS, acceptance, time,
// options, calibration against a ground truth) and report.html (mean, std and error maps, a
// flip-book strip of XZ slices of a few draws). Under several ranks the tomogram is cut into Z
// slabs, one per rank, written into the same files (dist/shared_writers.h); the ranks' statistics
// are merged and rank 0 writes the summary and the report.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "unwedge/core/progress.h"
#include "unwedge/dist/distributed.h"
#include "unwedge/infer/sample.h"
#include "unwedge/model/model.h"

namespace unwedge {

/// Every option of the sample job (the CLI maps its flags onto these).
struct SampleFilesOptions {
  std::string model;              ///< model file of a posterior method (.uwm)
  std::string in;                 ///< tomogram
  std::string even, odd;          ///< or half tomograms (the draws split between them, pooled)
  std::string out_dir;            ///< folder for the outputs (created)
  /// Or a RELION 5 tomograms table (io/relion.h): every tomogram sampled into out_dir/NAME/
  /// (the halves for a model trained on halves, else the tomogram), each with the tilt range
  /// of its tilt-series angles unless tilt_range is given, and the table written to
  /// out_dir/tomograms.star with each posterior mean in rlnTomoReconstructedTomogramDenoised.
  std::string star;
  std::string truth;              ///< ground truth (empty: none): calibration in the summary
  SampleOptions sample;           ///< draws (posterior), tiling (tile 0: the training patch +
                                  ///< overlap), interval, bounds, flip-book planes
  std::vector<double> tilt_range;  ///< the input's tilt range MIN MAX, degrees (empty: the model's)
  std::string device = "model";   ///< model | auto | cpu | cuda | cuda:N
  NormSource norm = NormSource::input;
  int mode = 2;                   ///< MRC mode written: 2 (float32) or 12 (float16)
  bool save_samples = false;      ///< also write every draw to out_dir/samples/
  bool report = true;             ///< write report.html and flipbook.png
  /// Calibrate the spread from the data alone first (infer/calibrate.h: a central cube of the
  /// first input, the T_M∘R proxy's known answer), scale std and bounds by its factor and
  /// record it in summary.json ("calibration").
  bool calibrate = false;
  int64_t calibrate_cubes = 1;    ///< at most this many cubes, spread over the volume
  bool overwrite = false;
  bool permissive = false;
  std::string label;              ///< label line added to outputs (program, command)
};

/// What the job did (the summary and statistics on every rank; rank 0 wrote them).
struct SampleFilesResult {
  std::string method;
  SampleStats stats;                 ///< merged across ranks
  nlohmann::json summary;            ///< the content of summary.json
  std::vector<std::string> written;  ///< files in place when the job returned
};

/// sample_KKK.mrc, the file name of draw k.
std::string sample_file_name(int64_t k);

/// The options as JSON (in the summary; the ranks check they agree).
nlohmann::json sample_files_options_json(const SampleFilesOptions& o);

/// Runs the job (a `star` table: once per tomogram, all ranks on each in turn; the result's
/// summary is {"tomograms": [{name, summary}, ...]}, its stats the last tomogram's, `written`
/// every file and the table). With `dist` of several ranks, every rank calls it with the same
/// options (checked). Throws before writing anything for options and inputs that do not fit, outputs
/// that exist without overwrite, or a deterministic model.
SampleFilesResult sample_files(const SampleFilesOptions& opts, Distributed* dist = nullptr,
                               const ProgressFn& progress = {});

}  // namespace unwedge
