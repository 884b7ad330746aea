// Training from files, the job behind `unwedge train` (and the Python API): checks what is asked
// (inputs, domain, outputs), reads the tomograms (or the tilt series), then trains:
// train_files_prepare throws before any output is touched; train_files_run builds the trainer
// (which checks the rest), calls back once everything is known to be good (the CLI writes the
// resolved configuration there), trains and writes the model and its log.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "unwedge/core/progress.h"
#include "unwedge/dist/distributed.h"
#include "unwedge/train/trainer.h"

namespace unwedge {

/// Every input and output of a training run from files (TrainOptions holds the trainer's own).
struct TrainFilesOptions {
  TrainOptions train;                      ///< method, budget, sampler, wedge, domain, ...
  std::vector<std::string> even, odd;      ///< half tomograms, paired by position
  std::vector<std::string> in;             ///< or single tomograms
  /// Or a RELION 5 tomograms table (io/relion.h): its half tomograms (methods that train on
  /// halves) or tomograms, each with the tilt range of its tilt-series STAR (unless tilt_ranges
  /// is given or tilt_from_files is off).
  std::string star;
  std::vector<std::string> masks;          ///< specimen masks, one per tomogram (optional)
  bool auto_mask = false;                  ///< masks from local variance instead
  double auto_mask_quantile = 0.3;         ///< fraction of 16^3 cells auto_mask treats as empty
  std::string tilt_series, angles;         ///< train.domain "tilt-series": the aligned stack
                                           ///< [n_tilts, Y, X] and its angles (.tlt)
  bool wedge_from_angles = false;          ///< tilt series: the wedge spans the angles (the
                                           ///< caller gave no tilt range)
  /// One tilt range per tomogram, MIN MAX each (2 x the inputs, in input order); empty: the
  /// run's range (train.wedge) or, with tilt_from_files, a .tlt beside each tomogram.
  std::vector<double> tilt_ranges;
  /// Each tomogram's tilt range from a `.tlt` beside it (train_tilt_file_beside) where there is
  /// one (the caller gave no tilt range); the others keep train.wedge.
  bool tilt_from_files = false;
  /// Each tomogram's wedge sign from its own data where its range is asymmetric
  /// (ops/wedge_sign.h: the convention whose missing band holds less power), logged with both
  /// powers; train.wedge.flip_sign then applies only to symmetric ranges (where it changes
  /// nothing). Off: train.wedge.flip_sign for every tomogram. Tomogram domain only.
  bool wedge_sign_auto = false;
  std::string model;                       ///< the model to write (.uwm)
  bool resume = false;                     ///< continue from `model`
  bool overwrite = false;                  ///< replace an existing model and log
  bool permissive = false;                 ///< accept MRC quirks with a warning
};

/// The patch edge `train_files_prepare` uses when train.sampler.patch is 0 (auto): 40 voxels on
/// a CPU (the size of the CPU benches in bench/RESULTS.md; a 64³ step has (64/40)³ ≈ 4× the
/// voxels, so a CPU budget buys about a quarter of the steps), 64 on a GPU; 32 on any device
/// for the methods that learn embeddings of particles (mae, contrastive: a patch a few particles
/// wide, "Representations" in bench/RESULTS.md); never more than the smallest volume edge (Z,
/// Y, X of every input), rounded down to a multiple of 8 (at least 8). `device` is a --device
/// value (auto resolves first); `method` a registered name, or empty for a restoring method.
int64_t train_patch_auto(const std::string& device, const std::vector<TrainInput>& inputs,
                         const std::string& method = "");

/// A checked request: the trainer's resolved options and the inputs, read.
struct TrainFilesPlan {
  TrainOptions train;
  std::vector<TrainInput> inputs;
  TrainOutputs outputs;  ///< the model and its log, MODEL.train.jsonl
};

/// MODEL.uwm -> MODEL.train.jsonl (the training log beside the model).
std::string train_log_path(const std::string& model);

/// The tilt-angle file of a tomogram, beside it: `tomo.tlt` for `tomo.mrc`, and for a half
/// (`tomo_even.mrc`, `tomo.odd.mrc`, `tomo-even.mrc`, AreTomo3's `tomo_EVN_Vol.mrc`, ...) also
/// the whole's `tomo.tlt`; empty
/// when there is none.
std::string train_tilt_file_beside(const std::string& tomogram);

/// The request with a RELION 5 tomograms table (`star`) expanded into even/odd or in and one
/// tilt range per tomogram (from its tilt-series angles; the run's range where it has none);
/// the request unchanged without one. Throws FormatError naming the table and the column when
/// what the method needs is missing, ValueError when files are also given.
TrainFilesOptions train_files_from_star(const TrainFilesOptions& opts);

/// Checks the request (a `star` table expanded first) and reads the inputs: the domain (a tilt series needs a method that trains
/// on tilt images, its angles, and no tomograms or masks; the 2D network and depth-1 patches are
/// set), the outputs (refused when they exist, unless resume or overwrite) and the inputs
/// (counts, shapes, finiteness; angles and sections agree). Throws before touching any output.
TrainFilesPlan train_files_prepare(const TrainFilesOptions& opts);

/// Trains (train_run) and writes the model and the log. With `dist` of several ranks, every rank
/// calls it with the same plan (checked). `ready`, when given, runs once the trainer has checked
/// everything (options, method options, patch against the volumes) and before any output is
/// written: the CLI writes the resolved configuration there, so a refused run leaves nothing.
/// A first run that fails before its first checkpoint removes its log.
/// The run stops early at a step boundary, its checkpoint saved, when the stop request is set
/// (core/atomic_file.h: stop_requested; TrainResult::stopped_by_signal).
TrainResult train_files_run(const TrainFilesPlan& plan, Distributed* dist = nullptr,
                            ProgressFn progress = {}, const std::function<void()>& ready = {});

}  // namespace unwedge
