// `unwedge sample`: posterior samples of a tomogram from a posterior model (cryowgen-mc,
// cryowgen-langevin), tiled and streamed like restoration. Writes, in --out-dir, the posterior
// mean, std and credible-interval bounds (input scale and header), the samples
// (--save-samples), summary.json (ESS, acceptance, time, options, calibration against --truth)
// and report.html (mean, std and error maps, a flip-book strip of XZ slices of a few samples).
// Under launch/torchrun/SLURM the tomogram is cut into Z slabs, one per rank, written into the
// same files with restore's handshake; rank 0 merges the statistics and writes summary and report.
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include <torch/torch.h>

#include "cli_common.h"
#include "unwedge/dist/shared_writers.h"
#include "unwedge/core/device.h"
#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/eval/evaluate.h"
#include "unwedge/eval/metrics.h"
#include "unwedge/eval/png.h"
#include "unwedge/eval/report.h"
#include "unwedge/infer/partition.h"
#include "unwedge/infer/sample.h"
#include "unwedge/io/mrc.h"
#include "unwedge/methods/posterior.h"
#include "unwedge/model/checkpoint.h"
#include "unwedge/dist/distributed.h"
#include "unwedge/model/normalize.h"

namespace unwedge::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

/// Every option of `unwedge sample` (defaults from SampleOptions / PosteriorOptions).
struct SampleParams {
  std::string model, in, even, odd, out_dir, truth;
  SampleOptions sample;
  std::vector<double> tilt_range;  ///< degrees; empty: the model's
  std::string device = "model";    ///< model: the training device when available, else cpu
  std::string norm = "input";      ///< input | model
  int mode = 2;
  bool save_samples = false, no_report = false;
  bool overwrite = false, permissive = false, no_progress = false;
};

std::string sample_name(int64_t k) {
  char b[32];
  std::snprintf(b, sizeof b, "sample_%03lld.mrc", static_cast<long long>(k));
  return b;
}

/// Fraction of voxels whose gt, mapped to the posterior's scale by restored = c gt + d (the fit
/// eval_add_uncertainty inverts), lies in [lower, upper].
double bounds_coverage(const at::Tensor& mean, const at::Tensor& lower, const at::Tensor& upper,
                       const at::Tensor& gt) {
  AffineFit fit = affine_fit(gt, mean);
  at::Tensor g = gt.to(torch::kDouble) * fit.scale + fit.offset;
  at::Tensor in = (g >= lower.to(torch::kDouble)) & (g <= upper.to(torch::kDouble));
  return in.to(torch::kDouble).mean().item<double>();
}


/// The run's statistics over all ranks: ESS min of the minima, ESS mean and MALA acceptance
/// weighted by tiles, time the slowest rank's, XZ planes summed (each rank's is zero outside
/// its slab).
void merge_stats(SampleStats& st, Distributed& dist) {
  if (dist.world_size() == 1) return;
  const std::vector<double> all = dist.allgather(
      {double(st.tiles), st.ess_min, st.ess_mean, st.acceptance, st.seconds});
  SampleStats m = st;
  m.tiles = 0;
  m.ess_min = 0;
  m.seconds = 0;
  double ess_sum = 0, acc_sum = 0, acc_tiles = 0;
  bool first = true;
  for (int r = 0; r < dist.world_size(); ++r) {
    const double* v = all.data() + 5 * r;
    if (v[0] <= 0) continue;  // an empty slab drew nothing
    m.tiles += int64_t(v[0]);
    m.ess_min = first ? v[1] : std::min(m.ess_min, v[1]);
    first = false;
    ess_sum += v[0] * v[2];
    if (v[3] >= 0) {
      acc_sum += v[0] * v[3];
      acc_tiles += v[0];
    }
  }
  for (int r = 0; r < dist.world_size(); ++r) m.seconds = std::max(m.seconds, all[5 * r + 4]);
  m.ess_mean = m.tiles > 0 ? ess_sum / double(m.tiles) : 0;
  m.acceptance = acc_tiles > 0 ? acc_sum / acc_tiles : -1;
  for (auto& x : m.xz) {
    at::Tensor flat = x.to(torch::kDouble).contiguous().view({-1});
    std::vector<double> mine(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
    const std::vector<double> every = dist.allgather(mine);
    at::Tensor sum = torch::from_blob(const_cast<double*>(every.data()),
                                      {dist.world_size(), flat.numel()}, torch::kDouble)
                         .sum(0);
    x = sum.view(x.sizes()).to(torch::kFloat);
  }
  st = m;
}

json options_json(const SampleParams& p) {
  const PosteriorOptions& po = p.sample.posterior;
  return {{"model", p.model},
          {"in", p.in},
          {"even", p.even},
          {"odd", p.odd},
          {"truth", p.truth},
          {"n", po.n},
          {"seed", po.seed},
          {"gamma", po.gamma},
          {"candidates", po.candidates},
          {"steps", po.steps},
          {"burn_in", po.burn_in},
          {"thin", po.thin},
          {"step_size", po.step_size},
          {"mala", po.mala},
          {"init", po.init},
          {"interval", p.sample.interval},
          {"bounds", p.sample.bounds},
          {"tilt_range_deg", {p.sample.wedge.tilt_min_deg, p.sample.wedge.tilt_max_deg}},
          {"wedge_sign", p.sample.wedge.flip_sign},
          {"tile", p.sample.tiling.tile},
          {"overlap", p.sample.tiling.overlap},
          {"batch", p.sample.tiling.batch},
          {"device", p.sample.tiling.device},
          {"norm", p.norm},
          {"mode", p.mode},
          {"save_samples", p.save_samples}};
}

void run_sample(SampleParams& p, const GlobalOptions& g) {
  const bool pair = !p.even.empty() || !p.odd.empty();
  if (pair && !p.in.empty()) throw ValueError("give either --in or --even/--odd, not both");
  if (pair && (p.even.empty() || p.odd.empty())) throw ValueError("--even needs --odd");
  if (!pair && p.in.empty()) throw ValueError("no input: give --in, or --even and --odd");
  if (p.norm != "input" && p.norm != "model") {
    throw ValueError("--norm: '" + p.norm + "' is not input or model");
  }
  PosteriorOptions& po = p.sample.posterior;
  if (po.n < 1 || (pair && po.n < 2)) {
    throw ValueError("--n " + std::to_string(po.n) + ": need at least " +
                     (pair ? "2 draws (one per half)" : "1 draw"));
  }
  sample_interval_z(p.sample.interval);  // validates (0, 1)
  if (!p.tilt_range.empty() && p.tilt_range[0] > p.tilt_range[1]) {
    throw ValueError("--tilt-range " + std::to_string(p.tilt_range[0]) + " " +
                     std::to_string(p.tilt_range[1]) + ": min above max");
  }

  // Outputs: refuse to overwrite before any work.
  const fs::path dir(p.out_dir);
  if (fs::exists(dir) && !fs::is_directory(dir)) {
    throw ValueError("--out-dir " + p.out_dir + " exists and is not a folder");
  }
  const std::string mean_path = (dir / "mean.mrc").string(), std_path = (dir / "std.mrc").string(),
                    lower_path = (dir / "lower.mrc").string(),
                    upper_path = (dir / "upper.mrc").string(),
                    summary_path = (dir / "summary.json").string(),
                    report_path = (dir / "report.html").string(),
                    flip_path = (dir / "flipbook.png").string();
  std::vector<std::string> vol_paths{mean_path, std_path, lower_path, upper_path};
  if (p.save_samples) {
    for (int64_t k = 0; k < po.n; ++k) vol_paths.push_back((dir / "samples" / sample_name(k)).string());
  }
  std::vector<std::string> all = vol_paths;
  all.push_back(summary_path);
  if (!p.no_report) {
    all.push_back(report_path);
    all.push_back(flip_path);
  }
  for (const auto& o : all) {  // a folder not yet created holds nothing to overwrite
    if (fs::is_directory(fs::path(o).parent_path())) output_check_writable(o, p.overwrite);
  }
  // Several ranks when started by `unwedge launch`, torchrun or SLURM: the tomogram is cut into
  // Z slabs, one per rank, each written into the shared output files (like restore).
  Distributed dist(dist_config_from_environ());
  if (!dist.is_main()) log_set_level(LogLevel::quiet);
  dist.check_same("the sample command (model, inputs, outputs, options)",
                  p.model + "|" + g.command_line);
  dist.barrier();  // every rank has checked the outputs before any is written

  LoadedCheckpoint ck = checkpoint_load(p.model);
  const CheckpointInfo& info = ck.info;
  if (!dynamic_cast<PosteriorMethod*>(ck.method.get())) {
    throw ValueError(p.model + ": method " + ck.method->name() +
                     " is deterministic (no posterior to sample): unwedge sample needs a model "
                     "trained with cryowgen-mc or cryowgen-langevin; use unwedge restore for " +
                     ck.method->name());
  }
  if (info.domain == "tilt-series") {
    throw ValueError(p.model + " is a tilt-series-domain model; unwedge sample takes tomograms");
  }
  SampleOptions so = p.sample;
  so.tiling.progress = !p.no_progress && !g.quiet && dist.is_main();
  std::string trained_on = info.train_options.value("device", "cpu");
  so.tiling.device = device_resolve(
      !p.device.empty() && p.device != "model" ? p.device
      : (trained_on.rfind("cuda", 0) == 0 && torch::cuda::is_available()) ? trained_on
                                                                          : "cpu",
      dist.world_size() > 1 ? dist.config().local_rank : -1);
  if (so.tiling.tile == 0) {
    so.tiling.tile = info.train_options.value("patch", int64_t(64)) + so.tiling.overlap;
  }
  so.wedge = info.wedge;
  if (!p.tilt_range.empty()) {
    so.wedge.tilt_min_deg = p.tilt_range[0];
    so.wedge.tilt_max_deg = p.tilt_range[1];
  }
  p.sample = so;

  MrcReadOptions rdo{p.permissive};
  std::vector<std::unique_ptr<MrcFile>> files;
  for (const auto& path : pair ? std::vector<std::string>{p.even, p.odd}
                               : std::vector<std::string>{p.in}) {
    files.push_back(std::make_unique<MrcFile>(path, rdo));
  }
  const auto shape = files[0]->shape();
  if (pair && files[1]->shape() != shape) {
    throw ShapeError("halves differ in shape: " + p.even + " and " + p.odd);
  }
  if (!p.truth.empty() && MrcFile(p.truth, rdo).shape() != shape) {
    throw ShapeError("--truth " + p.truth + " differs in shape from " + files[0]->path());
  }
  if (pair != ck.method->needs_halves()) {
    log_warn("model {} was trained on {}; sampling {}", ck.method->name(),
             ck.method->needs_halves() ? "half tomograms" : "one tomogram",
             pair ? "a pair of halves" : "one tomogram");
  }
  NormStats stats;
  if (p.norm == "model") {
    if (info.norm.empty()) throw FormatError(p.model + ": checkpoint holds no statistics");
    stats = info.norm.front();
  } else {
    NormMode mode = norm_mode_parse(info.norm_mode, p.model + ": norm_mode");
    if (pair) {
      auto b = norm_central_box(shape, info.norm_fraction);
      at::Tensor both = torch::stack({files[0]->read_box(b[0], b[1], b[2], b[3], b[4], b[5]),
                                      files[1]->read_box(b[0], b[1], b[2], b[3], b[4], b[5])});
      stats = norm_stats_of(both, mode, p.even + "+" + p.odd);
    } else {
      stats = norm_stats_compute(*files[0], mode, info.norm_fraction);
    }
  }
  log_info("sampling {} draws with {} (step {}), tiles {} overlap {} on {}; {} {:.0f} % bounds",
           po.n, ck.method->name(), info.step, so.tiling.tile, so.tiling.overlap,
           so.tiling.device, so.bounds, 100 * so.interval);

  std::vector<TileReader> readers;
  for (const auto& f : files) {
    MrcFile* fp = f.get();
    readers.push_back([fp, stats](int64_t z0, int64_t z1, int64_t y0, int64_t y1, int64_t x0,
                                  int64_t x1) {
      at::Tensor t = fp->read_box(z0, z1, y0, y1, x0, x1);
      check_finite(t, fp->path());
      return norm_apply(t, stats);
    });
  }
  fs::create_directories(dir);
  if (p.save_samples) fs::create_directories(dir / "samples");
  MrcWriteOptions wo;
  wo.mode = p.mode;
  wo.overwrite = p.overwrite;
  wo.label = output_label(g);
  const WorkSlab slab = partition_for_rank({shape}, dist.rank(), dist.world_size()).at(0);
  const bool shared = !slab.whole;
  std::vector<std::unique_ptr<MrcSlabWriter>> writers =
      shared_writers_open(vol_paths, shape, files[0]->meta(), wo, shared, dist);
  auto to_input_scale = [stats](MrcSlabWriter* w) {
    return SlabSink([w, stats](int64_t z0, const at::Tensor& s) { w->write_slab(z0, norm_invert(s, stats)); });
  };
  SampleSinks sinks;
  sinks.mean = to_input_scale(writers[0].get());
  sinks.std = [w = writers[1].get(), stats](int64_t z0, const at::Tensor& s) {
    w->write_slab(z0, s * stats.std);  // a spread: scaled, not shifted
  };
  sinks.lower = to_input_scale(writers[2].get());
  sinks.upper = to_input_scale(writers[3].get());
  for (size_t k = 4; k < writers.size(); ++k) sinks.samples.push_back(to_input_scale(writers[k].get()));

  so.tiling.z_begin = slab.z0;
  so.tiling.z_end = slab.z1;
  if (dist.world_size() > 1) {
    log_info("{} ranks share the sections; rank 0 samples {}..{} of {}", dist.world_size(),
             slab.z0, slab.z1, shape[0]);
  }
  SampleStats st;
  st.draws = po.n;
  if (slab.z1 > slab.z0) {
    st = sample_stream(*ck.method, shape, readers, sinks, so);
  } else {  // an empty slab (fewer sections than ranks): nothing drawn, blank XZ planes
    for (int64_t k = 0; k < std::min<int64_t>(std::max<int64_t>(so.xz_planes, 0), po.n); ++k) {
      st.xz.push_back(torch::zeros({shape[0], shape[2]}, torch::kFloat));
    }
  }
  shared_writers_commit(writers, shared, dist);
  merge_stats(st, dist);
  if (!dist.is_main()) return;  // rank 0 writes the summary and the report

  json summary = {{"method", ck.method->name()},
                  {"model_step", info.step},
                  {"draws", st.draws},
                  {"tiles", st.tiles},
                  {"ess_min", st.ess_min},
                  {"ess_mean", st.ess_mean},
                  {"acceptance", st.acceptance < 0 ? json(nullptr) : json(st.acceptance)},
                  {"seconds", st.seconds},
                  {"seconds_per_sample", st.seconds / double(st.draws)},
                  {"norm", {{"mean", stats.mean}, {"std", stats.std}}},
                  {"bounds", so.bounds == "quantile"
                                 ? "weighted quantiles of the draws per tile, blended"
                                 : "mean -/+ z std (Gaussian)"},
                  {"options", options_json(p)}};
  json eval;
  if (!p.truth.empty()) {
    at::Tensor mean = mrc_read(mean_path).data, sd = mrc_read(std_path).data,
               gt = mrc_read(p.truth, rdo).data;
    EvalOptions eo;
    eo.wedge.tilt_min_deg = so.wedge.tilt_min_deg;
    eo.wedge.tilt_max_deg = so.wedge.tilt_max_deg;
    eo.wedge.sign_flip = so.wedge.flip_sign;
    eo.voxel_size = files[0]->meta().voxel_size[0];
    eval = eval_against_truth(mean, gt, {}, eo);
    eval_add_uncertainty(eval, mean, sd, gt, {});
    eval["metrics"]["bounds_coverage"] =
        bounds_coverage(mean, mrc_read(lower_path).data, mrc_read(upper_path).data, gt);
    eval["metrics"]["bounds_interval"] = so.interval;
    summary["eval"] = eval;
    const json& m = eval["metrics"];
    log_info("against {}: CC {:.4f}, PSNR {:.2f} dB, coverage 90 % {:.3f}, 50 % {:.3f}, "
             "{} bounds {:.3f} (nominal {:.2f}), corr(std, |error|) {:.3f}",
             p.truth, m.value("cc", 0.0), m.value("psnr_db", 0.0), m.value("coverage_90", 0.0),
             m.value("coverage_50", 0.0), so.bounds, m.value("bounds_coverage", 0.0), so.interval,
             m.value("std_error_cc", 0.0));
  }
  write_text_file_atomic(summary_path, summary.dump(1) + "\n", p.overwrite);

  if (!p.no_report) {
    std::vector<Image> strip;
    std::vector<at::Tensor> planes;
    for (const auto& x : st.xz) planes.push_back(norm_invert(x, stats));
    if (!planes.empty()) {
      Contrast c = contrast_percentile(torch::stack(planes), 0.01, 0.99);
      const int64_t big = std::max(planes[0].size(0), planes[0].size(1));
      const int zoom = int(std::clamp<int64_t>((160 + big - 1) / big, 1, 4));
      for (const auto& x : planes) strip.push_back(image_from_slice(x, c, zoom));
      png_write(flip_path, image_montage(strip, int(strip.size())), p.overwrite);
    }
    ReportInput ri;
    ri.title = "unwedge sample: " + ck.method->name() + ", " + std::to_string(po.n) + " draws";
    ri.gt = p.truth;
    ri.input = pair ? p.even : p.in;
    ri.tilt_range_deg = {so.wedge.tilt_min_deg, so.wedge.tilt_max_deg};
    ReportMethod rm;
    rm.name = ck.method->name() + " posterior mean";
    rm.restored = mean_path;
    rm.std_map = std_path;
    rm.eval = eval;
    rm.info = {{"draws", st.draws},
               {"ess_min", st.ess_min},
               {"s_per_sample", st.seconds / double(st.draws)}};
    if (st.acceptance >= 0) rm.info["acceptance"] = st.acceptance;
    ri.methods.push_back(rm);
    if (!planes.empty()) {
      ri.sections.push_back(
          {"Samples: XZ slices at y = Y/2 (the wedge shows here)", flip_path,
           "Draws 0 to " + std::to_string(planes.size() - 1) +
               " left to right, one contrast for all. They agree where the data decide and "
               "differ where they do not (inside the missing wedge)."});
    }
    report_write(ri, report_path, p.overwrite);
  }
  log_info("wrote {} (mean, std, lower, upper{}, summary.json{}); {:.3g} s per sample, ESS min "
           "{:.3g} mean {:.3g}{}",
           p.out_dir, p.save_samples ? ", samples/" : "", p.no_report ? "" : ", report.html",
           st.seconds / double(st.draws), st.ess_min, st.ess_mean,
           st.acceptance >= 0 ? fmt::format(", MALA acceptance {:.3f}", st.acceptance) : "");
}

}  // namespace

void add_sample_command(CLI::App& root, GlobalOptions& g) {
  auto p = std::make_shared<SampleParams>();
  SampleOptions& so = p->sample;
  PosteriorOptions& po = so.posterior;
  so.tiling.tile = 0;
  CLI::App* cmd = root.add_subcommand(
      "sample", "Posterior samples of a tomogram from a cryowgen-mc or cryowgen-langevin model: "
                "mean, std, credible bounds, samples, summary and report in --out-dir");
  cmd->add_option("--model", p->model, "Model file from `unwedge train` (.uwm), a posterior method")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--in", p->in, "Tomogram, MRC")->check(CLI::ExistingFile);
  cmd->add_option("--even", p->even, "Even half, MRC (with --odd: the draws are split between "
                                     "the halves and pooled)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--odd", p->odd, "Odd half, MRC")->check(CLI::ExistingFile);
  cmd->add_option("--out-dir", p->out_dir, "Folder for the outputs (created)")->required();
  cmd->add_option("--truth", p->truth, "Ground truth, MRC: adds CC, PSNR, coverage and "
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
  cmd->add_flag("--save-samples", p->save_samples,
                "Also write every draw to OUT_DIR/samples/sample_KKK.mrc (default: off)");
  cmd->add_option("--flipbook", so.xz_planes, "Draws shown as XZ slices in the report")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(64)));
  cmd->add_flag("--no-report", p->no_report, "Skip report.html and flipbook.png (default: write)");
  cmd->add_option("--gamma", po.gamma, "cryowgen-mc temperature (< 0 = the trained value)")
      ->capture_default_str();
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
  cmd->add_option("--tilt-range", p->tilt_range,
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
  cmd->add_option("--device", p->device,
                  "model | auto | cpu | cuda | cuda:N (model: the training device when "
                  "available, else cpu)")
      ->capture_default_str();
  cmd->add_option("--norm", p->norm,
                  "Scale: input (robust statistics of this input) | model (the first training "
                  "tomogram's)")
      ->capture_default_str();
  cmd->add_option("--mode", p->mode, "MRC mode written: 2 (float32) or 12 (float16)")
      ->check(CLI::IsMember({2, 12}))
      ->capture_default_str();
  cmd->add_flag("--no-progress", p->no_progress, "No progress bar");
  add_overwrite_flag(*cmd, p->overwrite);
  add_permissive_flag(*cmd, p->permissive);
  cmd->callback([p, &g] { run_sample(*p, g); });
}

}  // namespace unwedge::cli
