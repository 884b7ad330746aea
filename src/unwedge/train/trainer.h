// The trainer: composes a Method (behind its interface), an optimizer, an LR schedule and the
// subtomogram sampler; logs, validates on the held-out Y band and checkpoints.
//
// Reproducibility: every step reseeds torch's default generator and the sampler's generator
// from (seed, step), so a run resumed from a checkpoint at step k draws exactly what an
// uninterrupted run draws from step k on (weights equal on the CPU).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "unwedge/core/volume.h"
#include "unwedge/methods/method.h"
#include "unwedge/dist/distributed.h"
#include "unwedge/model/normalize.h"
#include "unwedge/train/sampler.h"
#include "unwedge/train/schedule.h"

namespace unwedge {

/// Every trainer option with its default (the CLI's single source of defaults).
struct TrainOptions {
  std::string method = "n2n";                                 ///< registered method name
  nlohmann::json method_options = nlohmann::json::object();  ///< method/network options
  int64_t steps = 0;      ///< budget in optimizer steps (one of steps/epochs/minutes)
  int64_t epochs = 0;     ///< budget in epochs (patches_per_epoch / batch steps each)
  double minutes = 0;     ///< budget in minutes of `budget_clock`
  std::string budget_clock = "wall";  ///< wall | cpu (process CPU time, all threads: fair on a shared machine)
  int64_t stop_after = 0;  ///< stop (and checkpoint) after this step, schedule unchanged (0: off)
  int64_t batch = 4;      ///< subtomograms per step
  SamplerOptions sampler;
  std::string optimizer = "adamw";  ///< adam | adamw
  LrSchedule schedule;
  double weight_decay = 1e-4;  ///< AdamW decoupled weight decay (Adam: L2)
  double clip = 1.0;           ///< gradient-norm clipping (0: off)
  int64_t log_every = 10;      ///< steps between log lines (JSONL and history)
  int64_t val_every = 50;      ///< steps between validation losses (0: off)
  int64_t val_batches = 4;     ///< batches of the fixed validation set
  int64_t checkpoint_every = 500;  ///< steps between checkpoints (0: only at the end)
  uint64_t seed = 0;
  std::string device = "cpu";     ///< auto | cpu | cuda | cuda:N (ranks: cuda -> cuda:LOCAL_RANK)
  std::string precision = "fp32";  ///< fp32 | bf16: autocast around loss(); loss taken as float32
  NormMode norm_mode = NormMode::central;
  double norm_fraction = 0.5;  ///< central fraction of each axis used for the statistics
  MethodWedge wedge;
  std::string domain = "tomogram";  ///< tomogram | tilt-series (inputs are aligned tilt images)
  std::vector<double> angles_deg;   ///< tilt-series: the series' angles, degrees (stored)
  int64_t thickness = 0;            ///< tilt-series: tomogram Z stored for restore (0: unset)
  bool progress = true;        ///< progress bar on stderr
};

nlohmann::json train_options_to_json(const TrainOptions& o);

/// One training tomogram (or pair) as read from disk, in its own scale.
struct TrainInput {
  Volume a;           ///< tomogram, or even half
  Volume b;           ///< odd half (data undefined for single-tomogram methods)
  at::Tensor mask;    ///< specimen mask [Z, Y, X] or undefined
  std::string name;   ///< file name(s) for messages and the checkpoint
};

/// Reads the training inputs: `even`/`odd` paired by position (or `in` alone), masks
/// (`masks` paired by position, or `auto_mask`), checking counts, shapes and finiteness.
/// Throws ValueError / ShapeError / FormatError naming the files.
std::vector<TrainInput> train_inputs_read(const std::vector<std::string>& even,
                                          const std::vector<std::string>& odd,
                                          const std::vector<std::string>& in,
                                          const std::vector<std::string>& masks, bool auto_mask,
                                          double auto_mask_quantile, bool permissive);

struct TrainResult {
  int64_t steps = 0;         ///< steps completed in total
  double last_loss = 0;      ///< mean training loss of the last log window
  double last_val_loss = -1;  ///< last validation loss (-1: none)
  double seconds = 0;        ///< wall-clock seconds of this run
};

/// Trains and writes the checkpoint `out` (atomically; every checkpoint_every steps and at the
/// end) and the JSONL log `log_path` (appended to on resume). With `resume`, continues from
/// `out`. Throws before touching any output when the inputs or options are invalid.
///
/// With `dist` (several ranks, data-parallel): --batch is the global batch; every rank draws the
/// same global positions and trains on its own slice of batch/world_size subtomograms, gradients
/// are averaged across ranks, rank 0 broadcasts the initial weights and the budget decisions,
/// and only rank 0 writes the checkpoint and the log.
TrainResult train_run(const TrainOptions& opts, const std::vector<TrainInput>& inputs,
                      const std::string& out, const std::string& log_path, bool resume,
                      bool overwrite, Distributed* dist = nullptr);

/// The seed of step `step` of a run seeded `seed` (splitmix64 of both).
uint64_t train_step_seed(uint64_t seed, int64_t step);

}  // namespace unwedge
