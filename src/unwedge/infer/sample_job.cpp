#include "unwedge/infer/sample_job.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <torch/torch.h>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/dist/shared_writers.h"
#include "unwedge/eval/evaluate.h"
#include "unwedge/eval/metrics.h"
#include "unwedge/eval/png.h"
#include "unwedge/eval/report.h"
#include "unwedge/eval/svg.h"
#include "unwedge/infer/calibrate.h"
#include "unwedge/infer/partition.h"
#include "unwedge/io/mrc.h"
#include "unwedge/io/relion.h"
#include "unwedge/methods/posterior.h"

namespace unwedge {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

/// The output files of a run, in writer order: mean, std, lower, upper, then the draws.
struct SampleOutputs {
  std::vector<std::string> volumes;
  std::string summary, report, flipbook;
  std::string reliability, sparsification;  ///< with --truth and the report: SVG plots
};

SampleOutputs sample_outputs(const SampleFilesOptions& o) {
  const fs::path dir(o.out_dir);
  SampleOutputs out;
  for (const char* f : {"mean.mrc", "std.mrc", "lower.mrc", "upper.mrc"}) {
    out.volumes.push_back((dir / f).string());
  }
  if (o.save_samples) {
    for (int64_t k = 0; k < o.sample.posterior.n; ++k) {
      out.volumes.push_back((dir / "samples" / sample_file_name(k)).string());
    }
  }
  out.summary = (dir / "summary.json").string();
  out.report = (dir / "report.html").string();
  out.flipbook = (dir / "flipbook.png").string();
  out.reliability = (dir / "reliability.svg").string();
  out.sparsification = (dir / "sparsification.svg").string();
  return out;
}

/// Calibration against the ground truth: eval's metrics and uncertainty, and the coverage of the
/// credible bounds.
json evaluate_against_truth(const SampleFilesOptions& o, const SampleOptions& so,
                            const SampleOutputs& out, double voxel_size,
                            const SpreadCalibration& cal) {
  const at::Tensor mean = mrc_read(out.volumes[0]).data, sd = mrc_read(out.volumes[1]).data,
                   gt = mrc_read(o.truth, MrcReadOptions{o.permissive}).data;
  EvalOptions eo;
  eo.wedge.tilt_min_deg = so.wedge.tilt_min_deg;
  eo.wedge.tilt_max_deg = so.wedge.tilt_max_deg;
  eo.wedge.sign_flip = so.wedge.flip_sign;
  eo.voxel_size = voxel_size;
  json eval = eval_against_truth(mean, gt, {}, eo);
  eval_add_uncertainty(eval, mean, sd, gt, {}, cal.level_z);
  if (out.volumes.size() > 5) {  // --save-samples: the draws give the per-band spread
    std::vector<at::Tensor> draws;
    for (size_t k = 4; k < out.volumes.size(); ++k) draws.push_back(mrc_read(out.volumes[k]).data);
    eval_add_band_uncertainty(eval, mean, draws, so.std_scale, gt, eo, so.std_pool,
                              cal.level_z_measured, cal.level_z_wedge, so.std_structure);
    const json& m = eval["metrics"];
    log_info("  by band: coverage 90 % {:.3f} measured, {:.3f} wedge; Spearman corr(std, |error|) "
             "{:.3f} measured, {:.3f} wedge",
             m.value("coverage_90_measured_band", 0.0), m.value("coverage_90_wedge_band", 0.0),
             m.value("std_error_spearman_measured_band", 0.0),
             m.value("std_error_spearman_wedge_band", 0.0));
  }
  eval["metrics"]["bounds_coverage"] = metric_bounds_coverage(
      mean, mrc_read(out.volumes[2]).data, mrc_read(out.volumes[3]).data, gt);
  eval["metrics"]["bounds_interval"] = so.interval;
  const json& m = eval["metrics"];
  log_info("against {}: CC {:.4f}, PSNR {:.2f} dB, coverage 90 % {:.3f}, 50 % {:.3f}, "
           "{} bounds {:.3f} (nominal {:.2f}), corr(std, |error|) {:.3f}",
           o.truth, m.value("cc", 0.0), m.value("psnr_db", 0.0), m.value("coverage_90", 0.0),
           m.value("coverage_50", 0.0), so.bounds, m.value("bounds_coverage", 0.0), so.interval,
           m.value("std_error_cc", 0.0));
  return eval;
}

/// report.html and flipbook.png: the posterior mean and std next to the truth, and the XZ
/// planes of the first draws side by side.
void write_report(const SampleFilesOptions& o, const SampleOptions& so, const SampleOutputs& out,
                  const std::string& method, const SampleStats& st, const NormStats& stats,
                  const json& eval, std::vector<std::string>& written) {
  std::vector<at::Tensor> planes;
  for (const auto& x : st.xz) planes.push_back(norm_invert(x, stats));
  if (!planes.empty()) {
    Contrast c = contrast_percentile(torch::stack(planes), 0.01, 0.99);
    const int64_t big = std::max(planes[0].size(0), planes[0].size(1));
    const int zoom = int(std::clamp<int64_t>((160 + big - 1) / big, 1, 4));
    std::vector<Image> strip;
    for (const auto& x : planes) strip.push_back(image_from_slice(x, c, zoom));
    png_write(out.flipbook, image_montage(strip, int(strip.size())), o.overwrite);
    written.push_back(out.flipbook);
  }
  ReportInput ri;
  ri.title = "unwedge sample: " + method + ", " + std::to_string(so.posterior.n) + " draws";
  ri.gt = o.truth;
  ri.input = o.in.empty() ? o.even : o.in;
  ri.tilt_range_deg = {so.wedge.tilt_min_deg, so.wedge.tilt_max_deg};
  ReportMethod rm;
  rm.name = method + " posterior mean";
  rm.restored = out.volumes[0];
  rm.std_map = out.volumes[1];
  rm.eval = eval;
  rm.info = {{"draws", st.draws},
             {"ess_min", st.ess_min},
             {"s_per_sample", st.seconds / double(st.draws)}};
  if (st.acceptance >= 0) rm.info["acceptance"] = st.acceptance;
  ri.methods.push_back(rm);
  if (!planes.empty()) {
    ri.sections.push_back(
        {"Samples: XZ slices at y = Y/2 (the wedge shows here)", out.flipbook,
         "Draws 0 to " + std::to_string(planes.size() - 1) +
             " left to right, one contrast for all. They agree where the data decide and "
             "differ where they do not (inside the missing wedge)."});
  }
  if (eval.contains("uncertainty")) {
    const json& u = eval["uncertainty"];
    PlotSeries ideal{"ideal", {0, 1}, {0, 1}, "#888", true};
    std::vector<PlotSeries> lines{
        ideal, {"whole volume", u["reliability"]["nominal"].get<std::vector<double>>(),
                u["reliability"]["empirical"].get<std::vector<double>>(), "", false}};
    if (u.contains("bands")) {
      for (const auto& [band, label, colour] :
           std::array<std::array<const char*, 3>, 2>{{{"measured_band", "measured band", "#2a7"},
                                                      {"wedge_band", "missing wedge", "#c53"}}}) {
        const json& r = u["bands"][band]["reliability"];
        lines.push_back({label, r["nominal"].get<std::vector<double>>(),
                         r["empirical"].get<std::vector<double>>(), colour, false});
      }
    }
    PlotOptions po;
    po.title = "Reliability: voxels inside the central interval";
    po.xlabel = "nominal coverage";
    po.ylabel = "empirical coverage";
    po.fixed_y = true;
    write_text_file_atomic(out.reliability, svg_line_plot(lines, po), o.overwrite);
    written.push_back(out.reliability);
    const json& sp = u["sparsification"];
    const auto f = sp["fraction_removed"].get<std::vector<double>>();
    PlotOptions ps;
    char ause[32];
    std::snprintf(ause, sizeof ause, "%.3f", eval["metrics"].value("ause", 0.0));
    ps.title = std::string("Sparsification (AUSE ") + ause + ")";
    ps.xlabel = "fraction of voxels removed";
    ps.ylabel = "RMSE of the rest";
    write_text_file_atomic(
        out.sparsification,
        svg_line_plot({{"removed by std", f, sp["rmse_by_std"].get<std::vector<double>>(), "",
                        false},
                       {"oracle (removed by error)", f,
                        sp["rmse_oracle"].get<std::vector<double>>(), "#888", true}},
                      ps),
        o.overwrite);
    written.push_back(out.sparsification);
    ri.sections.push_back(
        {"Reliability diagram", out.reliability,
         "Fraction of voxels whose truth lies inside the posterior's stated interval for each "
         "mass (mean ± z std on the truth's scale: z the Gaussian one, or with --calibrate the "
         "data-only calibration's per level, summary.json calibration.level_z) against the "
         "nominal mass: on the diagonal when calibrated, below it when the std is too small. With "
         "--save-samples, also per Fourier band: the volumes restricted to the measured band "
         "and to the missing wedge, the std the spread of the draws restricted the same way."});
    ri.sections.push_back(
        {"Sparsification", out.sparsification,
         "RMSE of the voxels left after removing the most uncertain ones (largest std), against "
         "the oracle that removes the largest errors first; the closer, the better the std "
         "points at the errors (AUSE: the mean gap over the RMSE of all voxels)."});
  }
  report_write(ri, out.report, o.overwrite);
  written.push_back(out.report);
}

}  // namespace

std::string sample_file_name(int64_t k) {
  char b[32];
  std::snprintf(b, sizeof b, "sample_%03lld.mrc", static_cast<long long>(k));
  return b;
}

json sample_files_options_json(const SampleFilesOptions& o) {
  const SampleOptions& s = o.sample;
  const PosteriorOptions& po = s.posterior;
  return {{"model", o.model},
          {"uq", po.uq},
          {"in", o.in},
          {"even", o.even},
          {"odd", o.odd},
          {"truth", o.truth},
          {"n", po.n},
          {"seed", po.seed},
          {"gamma", po.gamma},
          {"candidates", po.candidates},
          {"ess_min", po.ess_min},
          {"steps", po.steps},
          {"burn_in", po.burn_in},
          {"thin", po.thin},
          {"step_size", po.step_size},
          {"mala", po.mala},
          {"init", po.init},
          {"move", po.move},
          {"interval", s.interval},
          {"bounds", s.bounds},
          {"std_pool", s.std_pool},
          {"std_structure", s.std_structure},
          {"tilt_range_deg", {s.wedge.tilt_min_deg, s.wedge.tilt_max_deg}},
          {"wedge_sign", s.wedge.flip_sign},
          {"tile", s.tiling.tile},
          {"overlap", s.tiling.overlap},
          {"batch", s.tiling.batch},
          {"device", s.tiling.device},
          {"norm", norm_source_name(o.norm)},
          {"mode", o.mode},
          {"save_samples", o.save_samples},
          {"calibrate", o.calibrate},
          {"calibrate_cubes", o.calibrate_cubes}};
}

namespace {

/// sample_files over every tomogram of a RELION 5 tomograms table.
SampleFilesResult sample_files_star(const SampleFilesOptions& o, Distributed& dist,
                                    const ProgressFn& progress) {
  if (!o.in.empty() || !o.even.empty() || !o.odd.empty() || !o.truth.empty()) {
    throw ValueError("--star " + o.star + " lists the tomograms: give no --in/--even/--odd/"
                     "--truth with it");
  }
  if (o.out_dir.empty()) throw ValueError("--star " + o.star + " needs --out-dir");
  const std::string out_star = (fs::path(o.out_dir) / "tomograms.star").string();
  if (fs::is_directory(o.out_dir)) output_check_writable(out_star, o.overwrite);
  const RelionTomograms t = relion_tomograms_read(o.star);
  const bool needs_halves = checkpoint_load(o.model).method->needs_halves();
  const bool has_tomogram =
      t.star.block("global")->loops.front().column("rlnTomoReconstructedTomogram") >= 0;
  std::vector<std::string> even, odd, in;
  if (needs_halves || !has_tomogram) {
    const std::string why = needs_halves ? "the model was trained on half tomograms"
                                         : "no tomogram column: the halves are sampled";
    even = relion_column(t, "rlnTomoReconstructedTomogramHalf1", why);
    odd = relion_column(t, "rlnTomoReconstructedTomogramHalf2", why);
  } else {
    in = relion_column(t, "rlnTomoReconstructedTomogram", "the tomograms to sample");
  }
  std::vector<SampleFilesOptions> jobs;
  for (size_t i = 0; i < t.tomograms.size(); ++i) {  // every job checked before any runs
    SampleFilesOptions one = o;
    one.star.clear();
    one.out_dir = (fs::path(o.out_dir) / t.tomograms[i].name).string();
    if (in.empty()) {
      one.even = even[i];
      one.odd = odd[i];
    } else {
      one.in = in[i];
    }
    const auto& a = t.tomograms[i].angles;
    if (o.tilt_range.empty() && !a.empty()) {
      one.tilt_range = {*std::min_element(a.begin(), a.end()), *std::max_element(a.begin(), a.end())};
    }
    for (const char* f : {"mean.mrc", "std.mrc", "lower.mrc", "upper.mrc", "summary.json"}) {
      if (fs::is_directory(one.out_dir)) {
        output_check_writable((fs::path(one.out_dir) / f).string(), o.overwrite);
      }
    }
    jobs.push_back(std::move(one));
  }
  SampleFilesResult all;
  all.summary = {{"tomograms", nlohmann::json::array()}};
  std::vector<RelionOutput> outs;
  for (size_t i = 0; i < jobs.size(); ++i) {
    log_info("{} ({} of {}) -> {}", t.tomograms[i].name, i + 1, jobs.size(), jobs[i].out_dir);
    SampleFilesResult r = sample_files(jobs[i], &dist, progress);
    all.method = r.method;
    all.stats = r.stats;
    all.summary["tomograms"].push_back({{"name", t.tomograms[i].name}, {"summary", r.summary}});
    all.written.insert(all.written.end(), r.written.begin(), r.written.end());
    const std::string mean = (fs::path(jobs[i].out_dir) / "mean.mrc").string();
    if (dist.is_main()) outs.push_back(relion_output_from_mrc(mean));
  }
  dist.barrier();
  if (dist.is_main()) {
    star_write(out_star, relion_tomograms_with_outputs(t, outs), o.overwrite);
    log_info("wrote {} ({} posterior means in rlnTomoReconstructedTomogramDenoised)", out_star,
             outs.size());
  }
  dist.barrier();
  all.written.push_back(out_star);
  return all;
}

}  // namespace

SampleFilesResult sample_files(const SampleFilesOptions& o, Distributed* dist_in,
                               const ProgressFn& progress) {
  Distributed single{DistConfig{}};
  Distributed& dist = dist_in ? *dist_in : single;
  if (!o.star.empty()) return sample_files_star(o, dist, progress);
  const bool pair = !o.even.empty() || !o.odd.empty();
  if (pair && !o.in.empty()) throw ValueError("give either --in or --even/--odd, not both");
  if (pair && (o.even.empty() || o.odd.empty())) throw ValueError("--even needs --odd");
  if (!pair && o.in.empty()) throw ValueError("no input: give --in, or --even and --odd");
  const PosteriorOptions& po = o.sample.posterior;
  if (po.n < 1 || (pair && po.n < 2)) {
    throw ValueError("--n " + std::to_string(po.n) + ": need at least " +
                     (pair ? "2 draws (one per half)" : "1 draw"));
  }
  sample_interval_z(o.sample.interval);  // validates (0, 1)
  if (!o.tilt_range.empty() &&
      (o.tilt_range.size() != 2 || o.tilt_range[0] > o.tilt_range[1])) {
    throw ValueError("--tilt-range: expected MIN MAX degrees with MIN <= MAX");
  }

  // Outputs: refuse to overwrite before any work.
  const fs::path dir(o.out_dir);
  if (fs::exists(dir) && !fs::is_directory(dir)) {
    throw ValueError("--out-dir " + o.out_dir + " exists and is not a folder");
  }
  const SampleOutputs out = sample_outputs(o);
  std::vector<std::string> all = out.volumes;
  all.push_back(out.summary);
  if (o.report) {
    all.push_back(out.report);
    all.push_back(out.flipbook);
    if (!o.truth.empty()) {
      all.push_back(out.reliability);
      all.push_back(out.sparsification);
    }
  }
  for (const auto& f : all) {  // a folder not yet created holds nothing to overwrite
    if (fs::is_directory(fs::path(f).parent_path())) output_check_writable(f, o.overwrite);
  }
  dist.check_same("the sample job (model, inputs, outputs, options)",
                  sample_files_options_json(o).dump());
  dist.barrier();  // every rank has checked the outputs before any is written

  LoadedCheckpoint ck = checkpoint_load(o.model);
  const CheckpointInfo& info = ck.info;
  if (po.uq != "model" && po.uq != "bootstrap") {
    throw ValueError("--uq '" + po.uq + "': expected model or bootstrap");
  }
  if (po.uq == "model" && !method_registry().get(ck.method->name()).can.posterior) {
    throw ValueError(o.model + ": method " + ck.method->name() +
                     " is deterministic (no posterior to sample): unwedge sample needs a model "
                     "trained with " +
                     method_registry().names_with(&MethodCapabilities::posterior) +
                     ", or --uq bootstrap (the equivariant bootstrap of any restoration)");
  }
  if (info.domain == "tilt-series") {
    throw ValueError(o.model + " is a tilt-series-domain model; unwedge sample takes tomograms");
  }
  // The resolved options: device, tile and the input's tilt geometry.
  SampleOptions so = o.sample;
  so.tiling.device =
      model_device(info, o.device, dist.world_size() > 1 ? dist.config().local_rank : -1);
  if (so.tiling.tile == 0) {
    so.tiling.tile = info.train_options.value("patch", int64_t(64)) + so.tiling.overlap;
  }
  so.wedge = info.wedge;
  if (!o.tilt_range.empty()) {
    so.wedge.tilt_min_deg = o.tilt_range[0];
    so.wedge.tilt_max_deg = o.tilt_range[1];
  }
  SampleFilesOptions resolved = o;
  resolved.sample = so;

  const MrcReadOptions rdo{o.permissive};
  std::vector<std::unique_ptr<MrcFile>> files;
  for (const auto& path : pair ? std::vector<std::string>{o.even, o.odd}
                               : std::vector<std::string>{o.in}) {
    files.push_back(std::make_unique<MrcFile>(path, rdo));
  }
  const auto shape = files[0]->shape();
  if (pair) halves_check_same_grid(*files[0], *files[1]);
  model_warn_voxel_size(info, o.model, *files[0]);
  if (!o.truth.empty() && MrcFile(o.truth, rdo).shape() != shape) {
    throw ShapeError("--truth " + o.truth + " differs in shape from " + files[0]->path());
  }
  if (pair != ck.method->needs_halves()) {
    log_warn("model {} was trained on {}; sampling {}", ck.method->name(),
             ck.method->needs_halves() ? "half tomograms" : "one tomogram",
             pair ? "a pair of halves" : "one tomogram");
  }
  std::vector<const MrcFile*> file_ptrs;
  for (const auto& f : files) file_ptrs.push_back(f.get());
  const NormStats stats = model_norm_stats(info, o.norm, file_ptrs, o.model);
  log_info("sampling {} draws with {} (step {}), tiles {} overlap {} on {}; {} {:.0f} % bounds",
           po.n, ck.method->name(), info.step, so.tiling.tile, so.tiling.overlap,
           so.tiling.device, so.bounds, 100 * so.interval);

  std::vector<TileReader> readers;
  for (const auto& f : files) readers.push_back(tile_reader_normalised(*f, stats));
  // Before any output exists, so a calibration that fails leaves nothing behind. Every rank
  // computes the same factor (same cube, seed and device kind).
  SpreadCalibration cal;
  if (o.calibrate) {
    const int64_t side = std::min({so.tiling.tile, shape[0], shape[1], shape[2]});
    std::vector<at::Tensor> cubes, others;
    for (const auto& [z0, y0, x0] : calibration_cube_corners(shape, side, o.calibrate_cubes)) {
      auto cube = [&](const TileReader& r) {
        return r(z0, z0 + side, y0, y0 + side, x0, x0 + side);
      };
      cubes.push_back(cube(readers[0]));
      if (readers.size() > 1) others.push_back(cube(readers[1]));
    }
    cal = calibrate_spread(*ck.method, cubes, so, others);
    so.std_scale = cal.std_scale;
    so.bounds_scale = cal.bounds_scale;
  }
  fs::create_directories(dir);
  if (o.save_samples) fs::create_directories(dir / "samples");
  const MrcWriteOptions wo{o.mode, o.overwrite, /*keep_ext_header=*/false, o.label};
  const WorkSlab slab = partition_for_rank({shape}, dist.rank(), dist.world_size()).at(0);
  const bool shared = !slab.whole;
  std::vector<std::unique_ptr<MrcSlabWriter>> writers =
      shared_writers_open(out.volumes, shape, files[0]->meta(), wo, shared, dist);
  SampleSinks sinks;
  sinks.mean = slab_sink_to_input_scale(*writers[0], stats);
  sinks.std = [w = writers[1].get(), stats](int64_t z0, const at::Tensor& s) {
    w->write_slab(z0, s * stats.std);  // a spread: scaled, not shifted
  };
  sinks.lower = slab_sink_to_input_scale(*writers[2], stats);
  sinks.upper = slab_sink_to_input_scale(*writers[3], stats);
  for (size_t k = 4; k < writers.size(); ++k) {
    sinks.samples.push_back(slab_sink_to_input_scale(*writers[k], stats));
  }

  so.tiling.z_begin = slab.z0;
  so.tiling.z_end = slab.z1;
  if (dist.world_size() > 1) {
    log_info("{} ranks share the sections; rank 0 samples {}..{} of {}", dist.world_size(),
             slab.z0, slab.z1, shape[0]);
  }
  SampleStats st;
  st.draws = po.n;
  if (slab.z1 > slab.z0) {
    st = sample_stream(*ck.method, shape, readers, sinks, so,
                       dist.is_main() ? progress : ProgressFn{});
  } else {  // an empty slab (fewer sections than ranks): nothing drawn, blank XZ planes
    for (int64_t k = 0; k < std::min<int64_t>(std::max<int64_t>(so.xz_planes, 0), po.n); ++k) {
      st.xz.push_back(torch::zeros({shape[0], shape[2]}, torch::kFloat));
    }
  }
  shared_writers_commit(writers, shared, dist);
  SampleFilesResult res;
  res.method = ck.method->name();
  res.stats = sample_stats_merge(sample_stats_gather(st, dist));
  res.written = out.volumes;
  const SampleStats& m = res.stats;
  res.summary = {{"method", res.method},
                 {"uq", po.uq == "bootstrap" ? "equivariant bootstrap of the restoration"
                                             : "the method's posterior"},
                 {"model_step", info.step},
                 {"draws", m.draws},
                 {"tiles", m.tiles},
                 {"ess_min", m.ess_min},
                 {"ess_mean", m.ess_mean},
                 {"acceptance", m.acceptance < 0 ? json(nullptr) : json(m.acceptance)},
                 {"seconds", m.seconds},
                 {"seconds_per_sample", m.seconds / double(m.draws)},
                 {"norm", {{"mean", stats.mean}, {"std", stats.std}}},
                 {"bounds", so.bounds == "quantile"
                                ? "weighted quantiles of the draws per tile, blended"
                                : "mean -/+ z std (Gaussian)"},
                 {"options", sample_files_options_json(resolved)}};
  if (o.calibrate) res.summary["calibration"] = spread_calibration_json(cal, so.interval);
  if (!dist.is_main()) return res;  // rank 0 writes the summary and the report

  json eval;
  if (!o.truth.empty()) {
    eval = evaluate_against_truth(o, so, out, files[0]->meta().voxel_size[0], cal);
    res.summary["eval"] = eval;
  }
  write_text_file_atomic(out.summary, res.summary.dump(1) + "\n", o.overwrite);
  res.written.push_back(out.summary);
  if (o.report) write_report(o, so, out, res.method, m, stats, eval, res.written);
  return res;
}

}  // namespace unwedge
