// `unwedge train`: maps the flags onto the training job (train/train_job.h): a method trained on
// half tomograms (--even/--odd), single tomograms (--in) or a tilt series, written as one
// self-describing model file with its log and resolved configuration beside it.
#include <csignal>
#include <filesystem>

#include "cli_common.h"
#include "unwedge/core/atomic_file.h"
#include "unwedge/core/device.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/dist/distributed.h"
#include "unwedge/methods/method.h"
#include "unwedge/train/train_job.h"

namespace unwedge::cli {

namespace {

/// Every option of `unwedge train` with its default (TrainFilesOptions / TrainOptions hold the
/// job's and the trainer's).
struct TrainParams {
  TrainFilesOptions job;
  std::vector<std::string> opts;   ///< --opt KEY=VALUE
  std::string norm = "central";
  std::vector<double> tilt_range{-60.0, 60.0};
  std::string wedge_sign;        ///< --wedge-sign text (cli_common.h)
  bool no_progress = false;
  static constexpr int64_t kDefaultSteps = 1000;
};

void run_train(TrainParams& p, const CLI::App& cmd, const GlobalOptions& g) {
  TrainOptions& o = p.job.train;
  if (o.steps == 0 && o.epochs == 0 && o.minutes == 0) o.steps = TrainParams::kDefaultSteps;
  o.method_options = method_options_parse(o.method, p.opts);
  o.norm_mode = norm_mode_parse(p.norm, "--norm");
  const std::vector<double>& tr = p.tilt_range;
  if (tr.size() < 2 || tr.size() % 2 != 0) {
    throw ValueError("--tilt-range: expected MIN MAX degrees, or one MIN MAX pair per tomogram");
  }
  for (size_t i = 0; i < tr.size(); i += 2) {
    if (!(tr[i] < tr[i + 1])) throw ValueError("--tilt-range: expected MIN < MAX in each pair");
  }
  const WedgeSignMode sign = wedge_sign_parse(p.wedge_sign, cmd.count("--wedge-sign") > 0,
                                              WedgeSignMode::automatic);
  o.wedge = {tr[0], tr[1], sign == WedgeSignMode::minus};
  p.job.wedge_sign_auto = sign == WedgeSignMode::automatic;
  if (tr.size() > 2) p.job.tilt_ranges = tr;
  p.job.wedge_from_angles = p.job.tilt_from_files = cmd.count("--tilt-range") == 0;
  const std::string config = config_path_beside(p.job.model);
  if (!p.job.resume) output_check_writable(config, p.job.overwrite);
  const TrainFilesPlan plan = train_files_prepare(p.job);
  // Several ranks when started by `unwedge launch`, torchrun or SLURM (RANK/WORLD_SIZE...).
  DistConfig dc = dist_config_from_environ();
  dc.backend = dist_backend_for(device_parse(o.device));  // NCCL for CUDA when built with it
  Distributed dist(dc);
  if (!dist.is_main()) log_set_level(LogLevel::quiet);
  bool wrote_config = false;
  auto write_config = [&] {
    if (dist.is_main()) write_resolved_config(cmd, config, /*overwrite=*/true);
    wrote_config = true;
  };
  // One process: a SIGINT or SIGTERM (what SLURM sends before its time limit) ends the run at the
  // end of the current step with a checkpoint; a second one ends it at once. Ranks of a
  // distributed run would have to agree on the step, so they stop at once as before.
  if (dc.world_size <= 1) stop_signals_defer(true);
  TrainResult r;
  try {
    r = train_files_run(plan, &dist,
                        p.no_progress || g.quiet ? ProgressFn{} : progress_to_stderr(),
                        write_config);
  } catch (...) {
    // As the log: a first run that wrote no model leaves no configuration.
    if (wrote_config && dist.is_main() && !p.job.resume &&
        !std::filesystem::exists(p.job.model)) {
      std::error_code ec;
      std::filesystem::remove(config, ec);
    }
    throw;
  }
  if (r.stopped_by_signal != 0) {
    log_warn("stopped by {} after step {}: wrote {} (continue with --resume)",
             r.stopped_by_signal == SIGINT ? "SIGINT" : "SIGTERM", r.steps, p.job.model);
    return;
  }
  log_info("{} steps in {:.1f} s; last loss {:.5g}{}; wrote {}", r.steps, r.seconds, r.last_loss,
           r.last_val_loss >= 0 ? fmt::format(", validation loss {:.5g}", r.last_val_loss) : "",
           p.job.model);
}

}  // namespace

void add_train_command(CLI::App& root, GlobalOptions& g) {
  auto p = std::make_shared<TrainParams>();
  TrainFilesOptions& f = p->job;
  TrainOptions& o = f.train;
  CLI::App* cmd = root.add_subcommand(
      "train", "Train a restoration method (see `unwedge methods`) on half tomograms or one "
               "tomogram; writes MODEL.uwm, MODEL.config.yaml and MODEL.train.jsonl");
  cmd->add_option("--method", o.method, "Registered method name (n2n, n2v, ...)")
      ->capture_default_str();
  cmd->add_option("--even", f.even, "Even half tomogram(s), MRC; paired with --odd by position");
  cmd->add_option("--odd", f.odd, "Odd half tomogram(s), MRC");
  cmd->add_option("--in", f.in,
                  "Tomogram(s) for methods that train on one tomogram (isonet, n2v, mae, "
                  "contrastive; cryogen-ot and ei without halves), MRC");
  cmd->add_option("--star", f.star,
                  "Or a RELION 5 tomograms table (tomograms.star): every tomogram in it, the "
                  "halves (rlnTomoReconstructedTomogramHalf1/2) or the tomogram, each with the "
                  "tilt range of its tilt-series STAR (docs/projects.md)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", f.model, "Model file to write (.uwm)")->required();
  cmd->add_option("--domain", o.domain,
                  "tomogram, or tilt-series: n2v denoises the aligned tilt images (2D patches "
                  "--patch x --patch of single tilts; pixel-independent shot noise) and restore "
                  "back-projects them")
      ->capture_default_str()
      ->check(CLI::IsMember({"tomogram", "tilt-series"}));
  cmd->add_option("--tilt-series", f.tilt_series,
                  "--domain tilt-series: aligned tilt series, MRC stack (one section per tilt)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--angles", f.angles,
                  "--domain tilt-series: tilt angles in degrees, one per section (.tlt/.rawtlt); "
                  "stored with the model (and the wedge, unless --tilt-range is given)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--thickness", o.thickness,
                  "--domain tilt-series: tomogram thickness Z in voxels stored for restore "
                  "(0 = give it to restore)")
      ->capture_default_str();
  cmd->add_option("--mask", f.masks,
                  "Specimen mask(s), MRC (nonzero = specimen), one per tomogram; patches are "
                  "centred inside it");
  cmd->add_flag("--auto-mask", f.auto_mask,
                "Mask from local variance (16^3 cells; the quietest cells are skipped)");
  cmd->add_option("--auto-mask-quantile", f.auto_mask_quantile,
                  "Fraction of cells --auto-mask treats as empty")
      ->capture_default_str();
  cmd->add_option("--opt", p->opts,
                  "Method/network option KEY=VALUE, repeatable (list: unwedge methods "
                  "--options NAME); e.g. --opt base_channels=32 --opt depth=4 on a GPU (base_channels: the "
                  "method's default, 16, except cryogen-ot: 32 on a GPU or from " +
                      fmt::format("{:g}", kWideCpuMinutes) + " CPU-minutes of --minutes and " +
                      fmt::format("{:g}", kWideCpuMinutesPerMvoxel) + " per million voxels of input on a CPU as fast "
                      "as the reference machine, proportionally more on a slower one: a speed probe "
                      "measures it, docs/training.md)");
  cmd->add_option("--steps", o.steps,
                  "Budget in optimizer steps (default " +
                      std::to_string(TrainParams::kDefaultSteps) + " when no budget is given)");
  cmd->add_option("--epochs", o.epochs, "Budget in epochs (non-overlapping patches / batch)");
  cmd->add_option("--minutes", o.minutes, "Budget in minutes of --budget-clock");
  cmd->add_option("--budget-clock", o.budget_clock,
                  "Clock of --minutes: wall, or cpu (this process's CPU time over all threads: "
                  "equal budgets on a shared machine)")
      ->check(CLI::IsMember({"wall", "cpu"}))
      ->capture_default_str();
  cmd->add_option("--stop-after", o.stop_after,
                  "Stop and checkpoint after this step, keeping the full budget's schedule "
                  "(for job time limits; continue with --resume; 0 = off)")
      ->capture_default_str();
  o.sampler.patch = 0;  // auto unless given
  cmd->add_option("--patch", o.sampler.patch,
                  "Subtomogram edge, voxels [default auto: 40 on a CPU, 64 on a GPU, at most the "
                  "smallest volume edge, a multiple of 8; 64 for tilt-series]");
  o.batch = 0;  // auto unless given
  cmd->add_option("--batch", o.batch,
                  "Subtomograms per step [default auto: 2 for n2n on a CPU, 4 otherwise, and 2 "
                  "for ei and cryogen-ot on a CPU when a --minutes budget buys fewer than 100 "
                  "steps at 4 (a speed probe says: docs/training.md); a multiple of the ranks]");
  cmd->add_option("--val-fraction", o.sampler.val_fraction,
                  "Fraction of Y held out as the validation band (at least one patch; 0 = none)")
      ->capture_default_str();
  cmd->add_option("--val-every", o.val_every, "Steps between validation losses (0 = off)")
      ->capture_default_str();
  cmd->add_option("--val-batches", o.val_batches, "Batches in the fixed validation set")
      ->capture_default_str();
  cmd->add_option("--optimizer", o.optimizer, "adam | adamw")->capture_default_str();
  cmd->add_option("--lr", o.schedule.lr, "Peak learning rate")->capture_default_str();
  cmd->add_option("--warmup", o.schedule.warmup,
                  "Linear warm-up steps (at most a tenth of the run)")
      ->capture_default_str();
  cmd->add_option("--final-lr-fraction", o.schedule.final_fraction,
                  "Learning rate at the end of the cosine decay, as a fraction of --lr")
      ->capture_default_str();
  cmd->add_option("--weight-decay", o.weight_decay, "Weight decay")->capture_default_str();
  cmd->add_option("--clip", o.clip, "Gradient-norm clipping (0 = off)")->capture_default_str();
  cmd->add_option("--log-every", o.log_every, "Steps between log lines")->capture_default_str();
  cmd->add_option("--checkpoint-every", o.checkpoint_every,
                  "Steps between checkpoints (0 = only at the end)")
      ->capture_default_str();
  cmd->add_option("--snapshots", o.snapshot_minutes,
                  "Also write the model at these minutes of --budget-clock, e.g. --snapshots "
                  "1,2,4,8 (OUT.at1min.uwm, ...: quality along one run)")
      ->delimiter(',');
  cmd->add_option("--seed", o.seed, "Random seed (every step derives from seed and step)")
      ->capture_default_str();
  cmd->add_option("--init-from", o.init_from,
                  "Start from the network of this model (.uwm), e.g. a cryogen-ot model for "
                  "cryowgen-mc or -langevin (their samplers then build on its generator), or a "
                  "model of other data to fine-tune: tensors of the same name and shape are "
                  "copied, a layer with more input channels (cryowgen's latent noise) gets the "
                  "shared ones and zeros for the others, the rest keep their initial values "
                  "(default: none)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--device", o.device,
                  "auto | cpu | cuda | cuda:N (auto: cuda when available; with several ranks, "
                  "cuda means cuda:LOCAL_RANK)")
      ->capture_default_str();
  cmd->add_option("--precision", o.precision,
                  "auto | fp32 | bf16 (bf16: autocast mixed precision, loss in float32; auto: "
                  "bf16 on a CPU with avx512_bf16, ~1.9x the steps per CPU-second, else fp32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  cmd->add_option("--norm", p->norm,
                  "Normalisation: central (mean/std of the central region) | percentile "
                  "(median, p1..p99 spread)")
      ->capture_default_str();
  cmd->add_option("--norm-fraction", o.norm_fraction,
                  "Central fraction of each axis used for the statistics")
      ->capture_default_str();
  cmd->add_option("--tilt-range", p->tilt_range,
                  "Measured tilt range MIN MAX, degrees (stored with the model), or one MIN MAX "
                  "pair per tomogram; not given: each tomogram's from a .tlt beside it "
                  "(tomo.tlt for tomo.mrc or tomo_even.mrc) where there is one")
      ->expected(2, 2 * 4096)
      ->capture_default_str();
  add_wedge_sign_option(*cmd, p->wedge_sign, WedgeSignMode::automatic);
  cmd->add_flag("--resume", f.resume,
                "Continue from --out (same inputs and options; same result as one run)");
  cmd->add_flag("--no-progress", p->no_progress, "No progress bar");
  add_overwrite_flag(*cmd, f.overwrite);
  add_permissive_flag(*cmd, f.permissive);
  cmd->callback([p, cmd, &g] { run_train(*p, *cmd, g); });
}

}  // namespace unwedge::cli
