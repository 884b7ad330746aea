// Restoration of files, the job behind `unwedge restore` (and the Python API): a trained model
// applied to tomograms (--in), to pairs of half tomograms (--even/--odd: the restored halves
// averaged), or, for a model trained on tilt images, to a tilt series that is denoised image by
// image and then back-projected. Outputs are written slab by slab in the input's scale and
// header. Under several ranks the work is shared out (infer/partition.h): whole tomograms, or
// the Z slabs of one tomogram written by every rank into the same files (dist/shared_writers.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "unwedge/core/progress.h"
#include "unwedge/dist/distributed.h"
#include "unwedge/infer/restore.h"
#include "unwedge/model/model.h"
#include "unwedge/physics/projector.h"

namespace unwedge {

/// A model trained with --domain tilt-series applied to an aligned tilt series.
struct TiltSeriesInput {
  std::string series;          ///< aligned tilt series, MRC stack [n_tilts, Y, X]
  std::string angles;          ///< its angles, .tlt (empty: the model's training angles)
  int64_t thickness = 0;       ///< tomogram Z, voxels (0: the model's)
  int64_t width = 0;           ///< tomogram X, voxels (0: the series' X)
  WbpOptions wbp;              ///< weighted back-projection of the denoised series
  std::string save_series;     ///< also write the denoised series here (empty: no)
};

/// Every option of the restore job (the CLI maps its flags onto these).
struct RestoreFilesOptions {
  std::string model;                    ///< model file from `unwedge train` (.uwm)
  std::vector<std::string> in;          ///< tomograms, each restored to one output
  std::vector<std::string> even, odd;   ///< or half tomograms, paired by position
  std::vector<std::string> out;         ///< outputs, one per input (or pair), by position
  /// Or a RELION 5 tomograms table (io/relion.h): every tomogram in it, the halves for a model
  /// trained on halves (else the tomogram, or the halves where there is no tomogram column),
  /// restored to out_dir/NAME.mrc, and the table written to out_star with those files in
  /// rlnTomoReconstructedTomogramDenoised.
  std::string star;
  std::string out_dir;                  ///< with star: the folder for the outputs (created)
  std::string out_star;                 ///< with star: the table written (default:
                                        ///< out_dir/tomograms.star)
  TiltSeriesInput tilt_series;          ///< a tilt series instead (series set): one output
  RestoreOptions restore;               ///< tile (0: the training patch + overlap), overlap,
                                        ///< batch, precision, save_halves (OUT_even, OUT_odd)
  std::string device = "model";         ///< model (the training device when available, else
                                        ///< cpu) | auto | cpu | cuda | cuda:N
  NormSource norm = NormSource::input;  ///< the input's own scale, or the model's
  int mode = 2;                         ///< MRC mode written: 2 (float32) or 12 (float16)
  bool overwrite = false;               ///< replace existing outputs
  bool permissive = false;              ///< accept MRC quirks with a warning
  std::string label;                    ///< label line added to outputs (program, command)
};

/// What the job did.
struct RestoreFilesResult {
  std::string method;                ///< the model's method
  int64_t model_step = 0;            ///< its training steps
  std::string device;                ///< where it ran (this rank)
  int64_t tile = 0;                  ///< tile edge used, voxels
  std::vector<std::string> written;  ///< every output file in place when the job returned
};

/// The outputs of a pair restored with save_halves: OUT_even and OUT_odd beside OUT.
std::string restore_half_path(const std::string& out, const std::string& half);

/// The request with a RELION 5 tomograms table (`star`) expanded into in or even/odd and out
/// (out_dir/NAME.mrc; star, out_dir and out_star then cleared); unchanged without one. Throws FormatError naming the table and column
/// when the model's inputs are missing, ValueError when files are also given.
RestoreFilesOptions restore_files_from_star(const RestoreFilesOptions& opts);

/// out_star, or out_dir/tomograms.star when it is empty.
std::string restore_star_path(const RestoreFilesOptions& opts);

/// The options as JSON (the ranks check they agree; the Python API prints them).
nlohmann::json restore_files_options_json(const RestoreFilesOptions& o);

/// Runs the job (a `star` table expanded first; the written table is in `written` too). With
/// `dist` of several ranks, every rank calls it with the same options (checked)
/// and the outputs are complete when any rank returns. Throws (before writing anything) for
/// inputs and options that do not fit: counts, shapes, a tilt-series model given a tomogram and
/// the reverse, outputs that exist without overwrite.
RestoreFilesResult restore_files(const RestoreFilesOptions& opts, Distributed* dist = nullptr,
                                 const ProgressFn& progress = {});

}  // namespace unwedge
