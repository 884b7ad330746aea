// `unwedge restore`: maps the flags onto the restore job (infer/restore_job.h) and prints what
// it did. A model trained with --domain tilt-series denoises every image of a tilt series
// (--tilt-series, --angles) and the tomogram is reconstructed from them by weighted
// back-projection.
#include "cli_common.h"
#include "unwedge/core/log.h"
#include "unwedge/dist/distributed.h"
#include "unwedge/infer/restore_job.h"

namespace unwedge::cli {

namespace {

/// Every option of `unwedge restore` (defaults from RestoreFilesOptions).
struct RestoreParams {
  RestoreFilesOptions job;
  std::string filter = "ramp";  ///< tilt-series WBP: ramp | sirt-like | none
  std::string norm = "input";   ///< input | model
  bool no_progress = false;
};

void run_restore(RestoreParams& p, const CLI::App& cmd, const GlobalOptions& g) {
  RestoreFilesOptions& o = p.job;
  o.tilt_series.wbp.filter = wbp_filter_parse(p.filter, "--filter");
  o.norm = norm_flag_parse(p.norm);
  o.label = output_label(g);
  // Several ranks when started by `unwedge launch`, torchrun or SLURM (RANK/WORLD_SIZE...).
  Distributed dist(dist_config_from_environ());
  if (!dist.is_main()) log_set_level(LogLevel::quiet);
  const RestoreFilesResult r =
      restore_files(o, &dist, p.no_progress || g.quiet ? ProgressFn{} : progress_to_stderr());
  if (dist.is_main()) {
    for (const auto& out : o.out) write_config_beside(cmd, out);
    if (!o.star.empty()) write_config_beside(cmd, restore_star_path(o));
  }
  log_debug("{} (step {}) on {}, tiles {}: {} file(s)", r.method, r.model_step, r.device, r.tile,
            r.written.size());
}

}  // namespace

void add_restore_command(CLI::App& root, GlobalOptions& g) {
  auto p = std::make_shared<RestoreParams>();
  RestoreFilesOptions& o = p->job;
  TiltSeriesInput& ts = o.tilt_series;
  CLI::App* cmd = root.add_subcommand(
      "restore", "Restore a tomogram (--in) or a pair of halves (--even/--odd) with a trained "
                 "model; tiled, streamed, written in the input's scale and header, with "
                 "OUT.config.yaml beside each output");
  cmd->add_option("--model", o.model, "Model file from `unwedge train` (.uwm)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--in", o.in,
                  "Tomogram(s) to restore, MRC (several: one --out each, paired by position; "
                  "under launch/torchrun/SLURM split across ranks)");
  cmd->add_option("--even", o.even,
                  "Even half(s), MRC (with --odd: the restored halves averaged)");
  cmd->add_option("--odd", o.odd, "Odd half(s), MRC, paired with --even by position");
  cmd->add_option("--tilt-series", ts.series,
                  "Aligned tilt series, MRC stack, for a model trained with --domain "
                  "tilt-series: each tilt image is denoised, then back-projected")
      ->check(CLI::ExistingFile);
  cmd->add_option("--angles", ts.angles,
                  "Tilt angles, degrees, one per section (.tlt); default: the model's")
      ->check(CLI::ExistingFile);
  cmd->add_option("--thickness", ts.thickness,
                  "Tilt series: tomogram thickness Z, voxels (0 = the model's)")
      ->capture_default_str();
  cmd->add_option("--width", ts.width, "Tilt series: tomogram width X, voxels (0 = the series')")
      ->capture_default_str();
  cmd->add_option("--filter", p->filter, "Tilt series: WBP row weighting, ramp | sirt-like | none")
      ->capture_default_str()
      ->check(CLI::IsMember({"ramp", "sirt-like", "none"}));
  cmd->add_option("--sirt-iterations", ts.wbp.sirt_iterations,
                  "Tilt series: iterations the sirt-like filter mimics")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--lowpass", ts.wbp.lowpass,
                  "Tilt series: WBP Hamming cut-off, cycles/pixel (Nyquist 0.5; 0 = off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--save-tilt-series", ts.save_series,
                  "Tilt series: also write the denoised tilt series here, MRC");
  cmd->add_option("--out", o.out, "Restored tomogram(s) to write, MRC, one per input");
  cmd->add_option("--star", o.star,
                  "Or a RELION 5 tomograms table: every tomogram in it restored to "
                  "--out-dir/NAME.mrc, and the table written with them in "
                  "rlnTomoReconstructedTomogramDenoised (docs/projects.md)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--out-dir", o.out_dir, "With --star: folder for the restored tomograms");
  cmd->add_option("--out-star", o.out_star,
                  "With --star: the table to write (default: --out-dir/tomograms.star)");
  cmd->add_flag("--save-halves", o.restore.save_halves,
                "With --even/--odd: also write OUT_even.mrc and OUT_odd.mrc (default: off)");
  cmd->add_option("--tile", o.restore.tile,
                  "Tile edge, voxels (0 = training patch + overlap), rounded up to the "
                  "network's size multiple")
      ->capture_default_str();
  cmd->add_option("--overlap", o.restore.overlap,
                  "Overlap of neighbouring tiles, voxels; tiles equal a whole-volume pass when "
                  "it covers the network's receptive field")
      ->capture_default_str();
  cmd->add_option("--flips", o.restore.flips,
                  "Average the restorations of each tile and of its wedge-keeping flips, each "
                  "flipped back: 1 (none), 2 (and Y), 4 (and Z with X, and all three); 4 costs "
                  "four passes and evens out what the network's orientation adds")
      ->check(CLI::IsMember({1, 2, 4}))
      ->capture_default_str();
  cmd->add_option("--batch", o.restore.batch,
                  "Tiles per forward pass; halved (and kept so) when the device runs out of "
                  "memory, an error naming --tile when one tile does not fit")
      ->capture_default_str();
  cmd->add_option("--device", o.device,
                  "model | auto | cpu | cuda | cuda:N (model: the training device when "
                  "available, else cpu; with several ranks, cuda means cuda:LOCAL_RANK)")
      ->capture_default_str();
  cmd->add_option("--precision", o.restore.precision,
                  "Network arithmetic: auto | fp32 | bf16 (autocast; blending and output stay "
                  "float32; auto: bf16 on a CPU with avx512_bf16, else fp32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  cmd->add_option("--norm", p->norm,
                  "Scale: input (robust statistics of this input, as in training) | model "
                  "(the first training tomogram's)")
      ->capture_default_str();
  cmd->add_option("--mode", o.mode, "MRC mode written: 2 (float32) or 12 (float16)")
      ->check(CLI::IsMember({2, 12}))
      ->capture_default_str();
  cmd->add_flag("--no-progress", p->no_progress, "No progress bar");
  add_overwrite_flag(*cmd, o.overwrite);
  add_permissive_flag(*cmd, o.permissive);
  cmd->callback([p, cmd, &g] { run_restore(*p, *cmd, g); });
}

}  // namespace unwedge::cli
