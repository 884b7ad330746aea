// `unwedge sample`: maps the flags onto the sample job (infer/sample_job.h): posterior samples of
// a tomogram from a posterior model (cryowgen-mc, cryowgen-langevin) with mean, std, credible
// bounds, samples, summary.json and report.html in --out-dir; prints what it did.
#include "cli_common.h"
#include "unwedge/core/log.h"
#include "unwedge/dist/distributed.h"
#include "unwedge/infer/sample_job.h"

namespace unwedge::cli {

namespace {

/// Every option of `unwedge sample` (defaults from SampleFilesOptions / SampleOptions /
/// PosteriorOptions).
struct SampleParams {
  SampleFilesOptions job;
  std::string norm = "input";  ///< input | model
  bool no_report = false, no_progress = false;
};

void run_sample(SampleParams& p, const CLI::App& cmd, const GlobalOptions& g) {
  SampleFilesOptions& o = p.job;
  o.norm = norm_flag_parse(p.norm);
  o.report = !p.no_report;
  o.label = output_label(g);
  // Several ranks when started by `unwedge launch`, torchrun or SLURM: the tomogram is cut into
  // Z slabs, one per rank, each written into the shared output files (like restore).
  Distributed dist(dist_config_from_environ());
  if (!dist.is_main()) log_set_level(LogLevel::quiet);
  const SampleFilesResult r =
      sample_files(o, &dist, p.no_progress || g.quiet ? ProgressFn{} : progress_to_stderr());
  if (!dist.is_main()) return;
  write_config_beside(cmd, o.out_dir);
  const SampleStats& st = r.stats;
  log_info("wrote {} (mean, std, lower, upper{}, summary.json{}, config.yaml); {:.3g} s per "
           "sample, ESS min {:.3g} mean {:.3g}{}",
           o.out_dir, o.save_samples ? ", samples/" : "", o.report ? ", report.html" : "",
           st.seconds / double(st.draws), st.ess_min, st.ess_mean,
           st.acceptance >= 0 ? fmt::format(", MALA acceptance {:.3f}", st.acceptance) : "");
}

}  // namespace

void add_sample_command(CLI::App& root, GlobalOptions& g) {
  auto p = std::make_shared<SampleParams>();
  SampleFilesOptions& o = p->job;
  SampleOptions& so = o.sample;
  PosteriorOptions& po = so.posterior;
  so.tiling.tile = 0;
  CLI::App* cmd = root.add_subcommand(
      "sample", "Posterior samples of a tomogram from a " +
                    method_registry().names_with(&MethodCapabilities::posterior) +
                    " model, or of any model with --uq bootstrap: mean, std, credible bounds, "
                    "samples, summary, report and config.yaml in --out-dir");
  cmd->add_option("--model", o.model,
                  "Model file from `unwedge train` (.uwm): a posterior method, or any method "
                  "with --uq bootstrap")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--in", o.in, "Tomogram, MRC")->check(CLI::ExistingFile);
  cmd->add_option("--even", o.even, "Even half, MRC (with --odd: the draws are split between "
                                    "the halves and pooled)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--odd", o.odd, "Odd half, MRC")->check(CLI::ExistingFile);
  cmd->add_option("--out-dir", o.out_dir, "Folder for the outputs (created)")->required();
  cmd->add_option("--star", o.star,
                  "Or a RELION 5 tomograms table: every tomogram sampled into --out-dir/NAME/, "
                  "with the table written to --out-dir/tomograms.star (posterior means in "
                  "rlnTomoReconstructedTomogramDenoised; docs/projects.md)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--truth", o.truth, "Ground truth, MRC: adds CC, PSNR, coverage and "
                                      "corr(std, |error|) to summary.json and the report")
      ->check(CLI::ExistingFile);
  cmd->add_option("--n", po.n, "Draws per tile (posterior samples)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(100000)));
  cmd->add_option("--seed", po.seed, "Draw k of every tile uses seed + k")->capture_default_str();
  cmd->add_option("--interval", so.interval, "Credible interval mass of lower.mrc / upper.mrc")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 0.999));
  cmd->add_option("--bounds", so.bounds,
                  "Interval from weighted quantiles of the draws (quantile) or mean -/+ z std "
                  "(gaussian)")
      ->capture_default_str()
      ->check(CLI::IsMember({"quantile", "gaussian"}));
  cmd->add_option("--std-pool", so.std_pool,
                  "std.mrc: sigma (voxels) of the Gaussian neighbourhood the draws' variance is "
                  "averaged over before the square root (0 = per voxel; 16 draws estimate one "
                  "voxel's variance to about 35 %)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 16.0));
  cmd->add_option("--std-structure", so.std_structure,
                  "std.mrc and the bounds: add this times the local power of the mean's fine "
                  "structure (detail below about 10 voxels, averaged over --std-pool) to the "
                  "draws' variance: a restoration errs most where it asserts detail, which the "
                  "draws under-state (0 = the draws' spread alone; docs/posterior.md)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_flag("--save-samples", o.save_samples,
                "Also write every draw to OUT_DIR/samples/sample_KKK.mrc (default: off)");
  cmd->add_option("--flipbook", so.xz_planes, "Draws shown as XZ slices in the report")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(64)));
  cmd->add_flag("--no-report", p->no_report, "Skip report.html and flipbook.png (default: write)");
  cmd->add_option("--uq", po.uq,
                  "Where the draws come from: model (the method's own posterior: cryowgen-mc, "
                  "cryowgen-langevin) | bootstrap (equivariant bootstrap of the restoration, any "
                  "method: R^-1 G(T_M(R x) + noise) with wedge-moving rotations R)")
      ->capture_default_str()
      ->check(CLI::IsMember({"model", "bootstrap"}));
  cmd->add_flag("--calibrate", o.calibrate,
                "Calibrate std and bounds from the data alone first: a central cube (or "
                "--calibrate-cubes) restored, "
                "turned by a wedge-moving rotation, wedged and noised again, sampled; std and "
                "bounds scaled so the known answer is covered at --interval; recorded in "
                "summary.json (docs/posterior.md; default: off)");
  cmd->add_option("--calibrate-cubes", o.calibrate_cubes,
                  "--calibrate: at most this many cubes (edge: the tile), spread over the volume "
                  "and pooled (1: the central one; each costs about one tile's sampling)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1000)));
  cmd->add_option("--gamma", po.gamma, "cryowgen-mc temperature (< 0 = the trained value)")
      ->capture_default_str();
  cmd->add_option("--ess-min", po.ess_min,
                  "cryowgen-mc: per tile, raise --gamma until the weights' effective sample size "
                  "is at least this fraction of the candidates (0 = off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--candidates", po.candidates,
                  "cryowgen-mc candidates drawn before weighting (0 = n)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(100000)));
  cmd->add_option("--steps", po.steps, "Langevin steps after burn-in")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(10000000)));
  cmd->add_option("--burn-in", po.burn_in, "Langevin steps discarded first")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(10000000)));
  cmd->add_option("--thin", po.thin, "Langevin: keep every thin-th state")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(100000)));
  cmd->add_option("--step-size", po.step_size,
                  "Langevin step in normalised units^2 (< 0 = the trained/automatic value)")
      ->capture_default_str();
  cmd->add_flag("--mala", po.mala, "Langevin: Metropolis-adjusted acceptance (default: off)");
  cmd->add_option("--init", po.init, "Langevin start: generator (G(y)) | mc (cryowgen-mc draws)")
      ->capture_default_str()
      ->check(CLI::IsMember({"generator", "mc"}));
  cmd->add_option("--move", po.move,
                  "Langevin: wedge (only the missing wedge moves; every draw keeps the start's "
                  "measured band) | all (every coefficient, under the likelihood)")
      ->capture_default_str()
      ->check(CLI::IsMember({"wedge", "all"}));
  cmd->add_option("--tilt-range", o.tilt_range,
                  "Tilt range of the input in degrees (default: the model's)")
      ->expected(2);
  cmd->add_option("--tile", so.tiling.tile,
                  "Tile edge, voxels (0 = training patch + overlap), rounded up to the "
                  "network's size multiple")
      ->capture_default_str();
  cmd->add_option("--overlap", so.tiling.overlap, "Overlap of neighbouring tiles, voxels")
      ->capture_default_str();
  cmd->add_option("--batch", so.tiling.batch, "Tiles per draw() call")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(4096)));
  cmd->add_option("--device", o.device,
                  "model | auto | cpu | cuda | cuda:N (model: the training device when "
                  "available, else cpu)")
      ->capture_default_str();
  cmd->add_option("--norm", p->norm,
                  "Scale: input (robust statistics of this input) | model (the first training "
                  "tomogram's)")
      ->capture_default_str();
  cmd->add_option("--mode", o.mode, "MRC mode written: 2 (float32) or 12 (float16)")
      ->check(CLI::IsMember({2, 12}))
      ->capture_default_str();
  cmd->add_flag("--no-progress", p->no_progress, "No progress bar");
  add_overwrite_flag(*cmd, o.overwrite);
  add_permissive_flag(*cmd, o.permissive);
  cmd->callback([p, cmd, &g] { run_sample(*p, *cmd, g); });
}

}  // namespace unwedge::cli
