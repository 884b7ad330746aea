// The trainer: a Trainer composes a Method (behind its interface), an optimizer, the learning-rate
// schedule, a Budget, the subtomogram sampler, the training log and the checkpoints; none of them
// knows the others' insides. step() takes one optimizer step, validate() scores the fixed
// validation set, save() writes the checkpoint, and run() loops until the budget is spent.
//
// Reproducibility: every step reseeds torch's default generator and the sampler's generator
// from (seed, step), so a run resumed from a checkpoint at step k draws exactly what an
// uninterrupted run draws from step k on (weights equal on the CPU).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "unwedge/core/progress.h"
#include "unwedge/core/volume.h"
#include "unwedge/dist/distributed.h"
#include "unwedge/methods/method.h"
#include "unwedge/model/checkpoint.h"
#include "unwedge/model/normalize.h"
#include "unwedge/train/budget.h"
#include "unwedge/train/sampler.h"
#include "unwedge/train/schedule.h"
#include "unwedge/train/train_log.h"

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
  int64_t batch = 4;      ///< subtomograms per step (global; 0: auto, train_batch_auto)
  SamplerOptions sampler;
  std::string optimizer = "adamw";  ///< adam | adamw
  LrSchedule schedule;
  double weight_decay = 1e-4;  ///< AdamW decoupled weight decay (Adam: L2)
  double clip = 1.0;           ///< gradient-norm clipping (0: off)
  int64_t log_every = 10;      ///< steps between log lines (JSONL and history)
  int64_t val_every = 50;      ///< steps between validation losses (0: off)
  int64_t val_batches = 4;     ///< batches of the fixed validation set
  int64_t checkpoint_every = 500;  ///< steps between checkpoints (0: only at the end)
  /// Minutes of `budget_clock` (this session and earlier ones) at which a copy of the model is
  /// written beside the checkpoint (train_snapshot_path): time-to-quality curves along one run.
  std::vector<double> snapshot_minutes;
  uint64_t seed = 0;
  std::string init_from;  ///< a model (.uwm) whose network starts this one (checkpoint_init_weights)
  std::string device = "cpu";     ///< auto | cpu | cuda | cuda:N (ranks: cuda -> cuda:LOCAL_RANK)
  std::string precision = "auto";  ///< auto | fp32 | bf16: autocast around loss(); loss taken as
                                   ///< float32; auto: precision_resolve (bf16 on avx512_bf16 CPUs)
  NormMode norm_mode = NormMode::central;
  double norm_fraction = 0.5;  ///< central fraction of each axis used for the statistics
  MethodWedge wedge;
  std::string domain = "tomogram";  ///< tomogram | tilt-series (inputs are aligned tilt images)
  std::vector<double> angles_deg;   ///< tilt-series: the series' angles, degrees (stored)
  int64_t thickness = 0;            ///< tilt-series: tomogram Z stored for restore (0: unset)
};

nlohmann::json train_options_to_json(const TrainOptions& o);

/// One training tomogram (or pair) as read from disk, in its own scale.
struct TrainInput {
  Volume a;           ///< tomogram, or even half
  Volume b;           ///< odd half (data undefined for single-tomogram methods)
  at::Tensor mask;    ///< specimen mask [Z, Y, X] or undefined
  std::string name;   ///< file name(s) for messages and the checkpoint
  /// This tomogram's own tilt range (unset: the run's, TrainOptions::wedge).
  std::optional<MethodWedge> wedge;
};

/// The tilt geometry of a batch (Batch::wedge): `run` shared by every sample when
/// `per_tomo` is empty, else each sample's tomogram's range (`tomo`: the patches' sources).
std::vector<MethodWedge> batch_wedges(const MethodWedge& run,
                                      const std::vector<MethodWedge>& per_tomo,
                                      const std::vector<int64_t>& tomo);

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
  double seconds = 0;        ///< seconds of the budget's clock this run
  /// The stop request (core/atomic_file.h) that ended the run early at a step boundary with
  /// its checkpoint saved: a deferred SIGINT/SIGTERM, or the Python package's Ctrl-C; 0: none.
  int stopped_by_signal = 0;
};

/// Where a training run writes.
struct TrainOutputs {
  std::string model;      ///< the checkpoint (.uwm), written atomically
  std::string log;        ///< the JSONL training log (appended to on resume)
  bool resume = false;    ///< continue from `model` (same inputs and options)
  bool overwrite = false;  ///< replace an existing model (without resume)
};

class Trainer {
 public:
  /// Checks the options and inputs, creates the method (or, with outputs.resume, recreates it
  /// from the checkpoint), normalises the inputs, builds the sampler, optimizer, budget and the
  /// fixed validation set, and opens the log. Throws before touching any output when the inputs
  /// or options are invalid.
  ///
  /// With `dist` (several ranks, data-parallel): --batch is the global batch; every rank draws
  /// the same global positions and trains on its own slice of batch/world_size subtomograms,
  /// gradients are averaged across ranks, rank 0 broadcasts the initial weights and the budget
  /// decisions, and only rank 0 writes the checkpoint and the log.
  Trainer(const TrainOptions& opts, const std::vector<TrainInput>& inputs,
          const TrainOutputs& outputs, Distributed* dist = nullptr,
          ProgressFn progress = {});
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  /// One optimizer step: the method's aux_step, loss, backward, gradients averaged across ranks,
  /// clipped, stepped. Returns the loss (averaged across ranks). Throws ValueError when it is
  /// not finite.
  double step();
  /// The mean loss over the fixed validation set (eval mode, no gradients, its own seed), or -1
  /// when validation is off.
  double validate();
  /// Writes the checkpoint (rank 0; atomically), `finished` when the budget is spent.
  void save(bool finished);
  /// Writes the snapshots (rank 0) whose minute marks the budget's clock has passed (with
  /// `budget_spent`, a time budget's end counts as its full length).
  void save_snapshots_due(bool budget_spent);
  /// Steps until the budget is spent (or stop_after), logging every log_every steps (with the
  /// validation loss every val_every) and checkpointing every checkpoint_every; saves at the end.
  TrainResult run();

  /// Steps completed (including those of the run resumed).
  int64_t steps_done() const { return step_; }
  Method& method() { return *method_; }
  const Budget& budget() const { return budget_; }
  const CheckpointInfo& info() const { return info_; }

 private:
  /// Sets the learning rate of `step` (the schedule over the planned steps) on the optimizer and
  /// the method's auxiliary optimizers, and records it in lr_.
  void apply_lr(int64_t step);
  /// Opens the training log (rank 0, at the start of run(): the constructor writes nothing).
  void open_log();
  Batch make_batch(const PatchBatch& pb, int64_t step) const;
  /// Closes the log window at `now_s` (session seconds): the log line and history point, with
  /// the validation loss when due (or `last`).
  TrainLogRecord log_window(double now_s, bool last);

  TrainOptions o_;
  TrainOutputs out_;
  Distributed* dist_ = nullptr;
  ProgressFn progress_;
  int64_t rank_ = 0, world_ = 1;
  torch::Device device_{torch::kCPU};
  c10::ScalarType precision_ = c10::kFloat;
  std::unique_ptr<Method> method_;
  LoadedCheckpoint ck_;
  CheckpointInfo info_;
  std::unique_ptr<SubtomoSampler> sampler_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  Budget budget_;
  StepContext step_ctx_;
  std::vector<PatchBatch> val_set_;
  std::vector<MethodWedge> tomo_wedges_;  ///< per input when they differ, else empty
  TrainLog log_;
  at::Generator gen_;
  int64_t step_ = 0;
  double lr_ = 0;
  size_t next_snapshot_ = 0;  ///< index of the next mark in o_.snapshot_minutes (sorted)
  // The current log window: summed losses and method terms since the last log line.
  double loss_sum_ = 0;
  int64_t loss_n_ = 0, window_start_ = 0;
  double window_t_ = 0;
  std::map<std::string, std::pair<double, int64_t>> term_sums_;
  TrainResult result_;
};

/// Trains and writes the checkpoint `out` (atomically; every checkpoint_every steps and at the
/// end) and the JSONL log `log_path` (appended to on resume): Trainer(...).run().
TrainResult train_run(const TrainOptions& opts, const std::vector<TrainInput>& inputs,
                      const std::string& out, const std::string& log_path, bool resume,
                      bool overwrite, Distributed* dist = nullptr, ProgressFn progress = {});

/// Where the snapshot at `minutes` of the model `model` goes: "run.uwm" -> "run.at4min.uwm"
/// ("run.at2.5min.uwm" for 2.5).
std::string train_snapshot_path(const std::string& model, double minutes);

/// The batch a run uses when TrainOptions::batch is 0 (auto): 2 for n2n on a CPU (bench/RESULTS
/// .md, "Defaults on the CPU"), 16 for contrastive, 8 for mae ("Representations"), 4 otherwise;
/// rounded up to a multiple of the ranks.
/// `device` is a resolved device ("cpu", "cuda:0").
int64_t train_batch_auto(const std::string& device, const std::string& method, int64_t ranks);

/// CPU-minutes of budget from which cryogen-ot trains 32 channels wide on a CPU, counted on the
/// reference machine (kWideReferenceStepSeconds): a slower CPU needs proportionally more. About
/// 59 steps of the wide network: 32 channels were behind 16 at 14 and 16 steps, level at 32 and
/// 47 (two seeds), ahead at 60 (bench/RESULTS.md, "The width rule on a slower CPU").
inline constexpr double kWideCpuMinutes = 8.0;
/// ... and CPU-minutes per million voxels of training data (the halves' voxels counted once) it
/// needs besides: a wider network makes fewer steps, so it also needs time to see a large volume.
inline constexpr double kWideCpuMinutesPerMvoxel = 7.0;
/// CPU seconds of one 32-channel cryogen-ot step (patch 40, batch 4) on the machine the two
/// thresholds above were measured on (AMD EPYC with avx512_bf16, bf16: 74 steps in 10
/// CPU-minutes on `small`, bench/RESULTS.md "cryogen-ot at 30 CPU-minutes").
inline constexpr double kWideReferenceStepSeconds = 8.1;
/// A 32-channel cryogen-ot step costs about this many times the probe (train_width_probe: one
/// forward and backward pass of the default 16-channel U-Net on the run's batch and patch), on
/// the same machine (41.6 s against 3.36 s on an AVX2 CPU in fp32; the reference's 8.1 s against
/// its 0.58 s n2n step, bench/RESULTS.md, "The width rule on a slower CPU").
inline constexpr double kWideStepPerProbe = 12.5;

/// A 16-channel step of ei or cryogen-ot (patch 40, batch 4) costs about this many times the
/// probe on the same machine (13.0 and 13.3 s against 3.36 s on an AVX2 CPU in fp32,
/// bench/RESULTS.md "The width rule on a slower CPU").
inline constexpr double kStepPerProbe = 4.0;
/// The batch a method with MethodInfo::few_steps trains at on a CPU when its auto batch would
/// make fewer steps than that in the budget (at its default width or narrower: a 32-channel
/// cryogen-ot keeps the batch its width rule was measured at).
inline constexpr int64_t kFewStepsBatch = 2;

/// `batch`, or kFewStepsBatch (rounded up to a multiple of `ranks`, never above `batch`) when a
/// budget of `budget_cpu_s` CPU-seconds buys fewer than `few_steps` steps of `step_s` each: on an
/// AVX2 CPU, 10 CPU-minutes bought 46 steps of ei at batch 4 (wedge-band CC 0.37 on a held-out
/// `small` preset) and 86 at batch 2 (0.67; cryogen-ot 0.36 and 0.67: bench/RESULTS.md, "Batch 2
/// when the budget buys few steps"). Unchanged when few_steps or step_s is 0.
int64_t train_batch_few_steps(int64_t batch, double budget_cpu_s, double step_s,
                              int64_t few_steps, int64_t ranks);

/// The network width (base_channels) a run uses when --opt does not give it (nor --init-from's
/// model), 0 for the method's own default: 32 for cryogen-ot on a GPU, or on a CPU with a budget
/// of at least kWideCpuMinutes CPU-minutes (`minutes` of the cpu clock, or of the wall clock
/// times `threads`) and at least kWideCpuMinutesPerMvoxel per million voxels of the inputs
/// (`voxels`, 0 when unknown: the first condition alone), both counted in minutes of the reference
/// machine: the budget times kWideReferenceStepSeconds / `wide_step_s`, this machine's predicted
/// CPU seconds per 32-channel step (0 = unknown: taken as the reference's). Its default 16
/// otherwise, so budgets in steps keep their speed (bench/RESULTS.md, "cryogen-ot at 30
/// CPU-minutes": 32 channels led 16 by 0.04-0.055 wedge-band CC at 30 CPU-minutes on `small`, 1.05
/// Mvoxels, and by 0.048 at 8; 16 led at 1-2; "16 or 32 channels on `standard`": on 6.3 Mvoxels at
/// 30 CPU-minutes 16 led 32 by 0.025 CC at the same wedge-band CC; "The width rule on a slower
/// CPU": 14 steps of 32 channels in 10 CPU-minutes on an AVX2 CPU without bf16 gave wedge-band CC
/// 0.24).
int64_t train_width_auto(const std::string& device, const std::string& method, double minutes,
                         const std::string& clock, int threads, double voxels = 0,
                         double wide_step_s = 0);

/// Process CPU seconds that one forward and backward pass of the default 16-channel U-Net takes
/// on [batch, 1, patch, patch, patch] on a CPU `device` in `precision` (fp32 | bf16), after one
/// untimed warm-up pass: the speed probe of the width rule (train_width_auto's wide_step_s =
/// kWideStepPerProbe times this; the rule probes only on a CPU). Uses the global RNG.
double train_width_probe(const c10::Device& device, const std::string& precision, int64_t patch,
                         int64_t batch);

/// The seed of step `step` of a run seeded `seed` (splitmix64 of both).
uint64_t train_step_seed(uint64_t seed, int64_t step);

}  // namespace unwedge
