// `unwedge restore`: applies a trained model (MODEL.uwm) to a tomogram or a pair of halves,
// tile by tile, writing the result slab by slab in the input's scale and header. A model trained
// with --domain tilt-series denoises every image of a tilt series (--tilt-series, --angles) and
// the tomogram is reconstructed from them by weighted back-projection.
#include <algorithm>
#include <filesystem>

#include <torch/torch.h>

#include "cli_common.h"
#include "unwedge/dist/shared_writers.h"
#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/core/device.h"
#include "unwedge/infer/partition.h"
#include "unwedge/infer/restore.h"
#include "unwedge/io/mrc.h"
#include "unwedge/io/tilt.h"
#include "unwedge/physics/projector.h"
#include "unwedge/model/checkpoint.h"
#include "unwedge/dist/distributed.h"
#include "unwedge/model/normalize.h"

namespace unwedge::cli {

namespace {

/// Every option of `unwedge restore`; 0 / empty means "from the checkpoint".
struct RestoreParams {
  std::string model;
  std::vector<std::string> in, even, odd, out;  ///< paired by position
  std::string tilt_series, angles;  ///< tilt-series models: aligned stack and its angles
  int64_t thickness = 0;            ///< tilt-series: tomogram Z, voxels (0: the checkpoint's)
  int64_t width = 0;                ///< tilt-series: tomogram X, voxels (0: the series' X)
  std::string filter = "ramp";      ///< tilt-series WBP: ramp | sirt-like | none
  int sirt_iterations = 10;         ///< tilt-series WBP: N of the sirt-like filter
  double lowpass = 0.0;             ///< tilt-series WBP: Hamming cut-off, cycles/pixel (0: off)
  std::string save_tilt_series;     ///< tilt-series: also write the denoised series here
  RestoreOptions restore;
  std::string device = "model";  ///< model: the training device when available, else cpu
  std::string norm = "input";  ///< input | model
  int mode = 2;
  bool overwrite = false, permissive = false, no_progress = false;
};

std::string with_suffix(const std::string& path, const std::string& suffix) {
  std::filesystem::path p(path);
  std::string ext = p.extension().string();
  p.replace_extension();
  return p.string() + suffix + (ext.empty() ? ".mrc" : ext);
}

/// Robust statistics of an input (p.norm == "input") or the model's first training input.
NormStats restore_stats(const RestoreParams& p, const CheckpointInfo& info, const MrcFile& f) {
  if (p.norm == "model") {
    if (info.norm.empty()) throw FormatError(p.model + ": checkpoint holds no statistics");
    return info.norm.front();
  }
  return norm_stats_compute(f, norm_mode_parse(info.norm_mode, p.model + ": norm_mode"),
                            info.norm_fraction);
}

/// The device: --device (auto resolved), or for "model" the training device when it is available, else cpu;
/// with several ranks on a node, rank i takes cuda:i.
std::string restore_device(const RestoreParams& p, const CheckpointInfo& info, int local_rank) {
  std::string trained_on = info.train_options.value("device", "cpu");
  std::string d = !p.device.empty() && p.device != "model" ? p.device
                  : (trained_on.rfind("cuda", 0) == 0 && torch::cuda::is_available()) ? trained_on
                                                                                      : "cpu";
  return device_resolve(d, local_rank);
}

/// Tilt-series models: denoise each tilt image (tiled in Y and X, one section per tile), then
/// weighted back-projection into the tomogram, written with the series' voxel size.
void run_restore_tilt_series(RestoreParams& p, const GlobalOptions& g) {
  if (p.tilt_series.empty()) throw ValueError("--angles needs --tilt-series");
  if (!p.in.empty() || !p.even.empty() || !p.odd.empty()) {
    throw ValueError("give either --tilt-series or --in/--even/--odd, not both");
  }
  if (p.out.size() != 1) {
    throw ValueError("--tilt-series gives one tomogram: give one --out (got " +
                     std::to_string(p.out.size()) + ")");
  }
  if (dist_config_from_environ().distributed()) {
    throw ValueError("--tilt-series restoration runs on one rank; start it without "
                     "launch/torchrun/srun (several ranks: restore tomograms with --in)");
  }
  const std::string out = p.out.front();
  if (p.restore.save_halves) {
    throw ValueError("--save-halves needs --even/--odd, not --tilt-series");
  }
  if (p.norm != "input" && p.norm != "model") {
    throw ValueError("--norm: '" + p.norm + "' is not input or model");
  }
  WbpOptions wo;
  wo.filter = wbp_filter_parse(p.filter, "--filter");
  wo.sirt_iterations = p.sirt_iterations;
  wo.lowpass = p.lowpass;
  output_check_writable(out, p.overwrite);
  if (!p.save_tilt_series.empty()) output_check_writable(p.save_tilt_series, p.overwrite);

  LoadedCheckpoint ck = checkpoint_load(p.model);
  const CheckpointInfo& info = ck.info;
  if (info.domain != "tilt-series") {
    throw ValueError(p.model + " is a " + info.domain + "-domain model (trained on " +
                     (info.inputs.empty() ? std::string("?") : info.inputs.front()) +
                     ") but --tilt-series " + p.tilt_series +
                     " is a tilt series: give it a tomogram (--in), or train with "
                     "--domain tilt-series");
  }
  std::vector<double> angles = p.angles.empty() ? info.angles_deg : tilt_read(p.angles);
  const std::string angles_from = p.angles.empty() ? p.model + " (training angles)" : p.angles;
  MrcFile f(p.tilt_series, MrcReadOptions{p.permissive});
  for (const auto& w : f.warnings()) log_warn("{}: {}", p.tilt_series, w);
  const auto shape = f.shape();  // [n_tilts, Y, X]
  if (int64_t(angles.size()) != shape[0]) {
    throw ValueError(angles_from + " has " + std::to_string(angles.size()) + " angles but " +
                     p.tilt_series + " has " + std::to_string(shape[0]) + " sections (tilts)");
  }
  const int64_t thickness = p.thickness > 0 ? p.thickness : info.thickness;
  if (thickness < 2) {
    throw ValueError("--thickness " + std::to_string(thickness) + ": give the tomogram's Z "
                     "(>= 2 voxels); " + p.model + " stores none");
  }

  RestoreOptions ro = p.restore;
  ro.progress = !p.no_progress && !g.quiet;
  ro.device = restore_device(p, info, /*local_rank=*/-1);
  if (ro.tile == 0) ro.tile = info.train_options.value("patch", int64_t(64)) + ro.overlap;
  if (ro.tile_z == 0) ro.tile_z = 1;  // one tilt image per tile; --batch tiles per pass
  const NormStats stats = restore_stats(p, info, f);
  log_info("denoising {} tilt images of {} x {} with {} (step {}), tiles {} overlap {} on {}",
           shape[0], shape[2], shape[1], ck.method->name(), info.step, ro.tile, ro.overlap,
           ro.device);

  at::Tensor series = torch::empty({shape[0], shape[1], shape[2]}, torch::kFloat);  // [n, Y, X]
  MrcFile* fp = &f;
  TileReader rd = [fp, stats](int64_t z0, int64_t z1, int64_t y0, int64_t y1, int64_t x0,
                              int64_t x1) {
    at::Tensor t = fp->read_box(z0, z1, y0, y1, x0, x1);
    check_finite(t, fp->path());
    return norm_apply(t, stats);
  };
  SlabSink sink = [&series, stats](int64_t z0, const at::Tensor& slab) {
    series.slice(0, z0, z0 + slab.size(0)).copy_(norm_invert(slab, stats));
  };
  restore_stream(*ck.method, shape, {rd}, {sink}, ro);

  MrcWriteOptions mo;
  mo.mode = p.mode;
  mo.overwrite = p.overwrite;
  mo.label = output_label(g);
  if (!p.save_tilt_series.empty()) {
    mrc_write(p.save_tilt_series, Volume{series, f.meta()}, mo);
    log_info("wrote {}", p.save_tilt_series);
  }
  VolumeMeta meta = f.meta();
  meta.voxel_size[2] = meta.voxel_size[0];  // isotropic voxels: Z sampled like X
  meta.origin = {0.0, 0.0, 0.0};
  meta.nstart = {0, 0, 0};
  meta.ext_header.clear();
  meta.exttyp.clear();
  log_info("back-projecting {} tilts ({:.1f} to {:.1f} deg) -> {} x {} x {} (X x Y x Z)",
           angles.size(), *std::min_element(angles.begin(), angles.end()),
           *std::max_element(angles.begin(), angles.end()), p.width > 0 ? p.width : shape[2],
           shape[1], thickness);
  mrc_write(out, Volume{wbp(series, angles, thickness, wo, p.width), meta}, mo);
  log_info("wrote {}", out);
}

/// One tomogram (or pair) to restore and the file(s) it produces.
struct RestoreJob {
  std::vector<std::string> ins;   ///< tomogram, or even and odd halves
  std::vector<std::string> outs;  ///< restored; with --save-halves also _even and _odd
  std::vector<std::unique_ptr<MrcFile>> files;
};

/// Statistics of a job's input for normalisation (every rank computes the same).
NormStats job_stats(const RestoreParams& p, const CheckpointInfo& info, const RestoreJob& job) {
  if (p.norm == "model") {
    if (info.norm.empty()) throw FormatError(p.model + ": checkpoint holds no statistics");
    return info.norm.front();
  }
  NormMode mode = norm_mode_parse(info.norm_mode, p.model + ": norm_mode");
  if (job.files.size() == 2) {
    auto b = norm_central_box(job.files[0]->shape(), info.norm_fraction);
    at::Tensor both = torch::stack({job.files[0]->read_box(b[0], b[1], b[2], b[3], b[4], b[5]),
                                    job.files[1]->read_box(b[0], b[1], b[2], b[3], b[4], b[5])});
    return norm_stats_of(both, mode, job.ins[0] + "+" + job.ins[1]);
  }
  return norm_stats_compute(*job.files[0], mode, info.norm_fraction);
}

/// Restores sections [slab.z0, slab.z1) of `job`. A whole slab is written and committed by this
/// rank alone; a partial one goes into the file rank 0 created, and the ranks combine the header
/// statistics before rank 0 renames it (every rank calls this for every split job, in order).
void restore_job(const RestoreParams& p, const GlobalOptions& g, Method& method,
                 const CheckpointInfo& info, const RestoreJob& job, const WorkSlab& slab,
                 RestoreOptions ro, Distributed& dist) {
  const auto shape = job.files[0]->shape();
  const NormStats stats = job_stats(p, info, job);
  std::vector<TileReader> readers;
  for (const auto& f : job.files) {
    MrcFile* fp = f.get();
    readers.push_back([fp, stats](int64_t z0, int64_t z1, int64_t y0, int64_t y1, int64_t x0,
                                  int64_t x1) {
      at::Tensor t = fp->read_box(z0, z1, y0, y1, x0, x1);
      check_finite(t, fp->path());
      return norm_apply(t, stats);
    });
  }
  MrcWriteOptions wo;
  wo.mode = p.mode;
  wo.overwrite = p.overwrite;
  wo.label = output_label(g);
  const bool shared = !slab.whole;
  std::vector<std::unique_ptr<MrcSlabWriter>> writers =
      shared_writers_open(job.outs, shape, job.files[0]->meta(), wo, shared, dist);
  std::vector<SlabSink> sinks;
  for (auto& w : writers) {
    MrcSlabWriter* wp = w.get();
    sinks.push_back([wp, stats](int64_t z0, const at::Tensor& s) {
      wp->write_slab(z0, norm_invert(s, stats));
    });
  }
  log_info("restoring {} (sections {}..{} of {}) with {} (step {}), tiles {} overlap {} on {}; "
           "scale mean {:.5g} std {:.5g}",
           job.ins.size() == 2 ? job.ins[0] + " + " + job.ins[1] : job.ins[0], slab.z0, slab.z1,
           shape[0], method.name(), info.step, ro.tile, ro.overlap, ro.device, stats.mean,
           stats.std);
  ro.z_begin = slab.z0;
  ro.z_end = slab.z1;
  if (slab.z1 > slab.z0) restore_stream(method, shape, readers, sinks, ro);
  shared_writers_commit(writers, shared, dist);
  for (const auto& o : job.outs) {
    if (!shared) {
      log_info("wrote {}", o);
    } else if (dist.is_main()) {
      log_info("wrote {} ({} ranks)", o, dist.world_size());
    }
  }
}

void run_restore(RestoreParams& p, const GlobalOptions& g) {
  if (!p.tilt_series.empty() || !p.angles.empty()) {
    run_restore_tilt_series(p, g);
    return;
  }
  const bool pair = !p.even.empty() || !p.odd.empty();
  if (pair && !p.in.empty()) throw ValueError("give either --in or --even/--odd, not both");
  if (pair && p.even.size() != p.odd.size()) {
    throw ValueError("--even lists " + std::to_string(p.even.size()) + " files but --odd lists " +
                     std::to_string(p.odd.size()) + " (halves are paired by position)");
  }
  if (!pair && p.in.empty()) throw ValueError("no input: give --in, or --even and --odd");
  if (p.norm != "input" && p.norm != "model") {
    throw ValueError("--norm: '" + p.norm + "' is not input or model");
  }
  const size_t n_jobs = pair ? p.even.size() : p.in.size();
  if (p.out.size() != n_jobs) {
    throw ValueError("--out lists " + std::to_string(p.out.size()) + " files for " +
                     std::to_string(n_jobs) + " inputs (paired by position)");
  }
  std::vector<RestoreJob> jobs(n_jobs);
  std::vector<std::string> all_outs;
  for (size_t i = 0; i < n_jobs; ++i) {
    RestoreJob& j = jobs[i];
    j.ins = pair ? std::vector<std::string>{p.even[i], p.odd[i]} : std::vector<std::string>{p.in[i]};
    j.outs = {p.out[i]};
    if (pair && p.restore.save_halves) {
      j.outs.push_back(with_suffix(p.out[i], "_even"));
      j.outs.push_back(with_suffix(p.out[i], "_odd"));
    }
    for (const auto& o : j.outs) {
      if (std::find(all_outs.begin(), all_outs.end(), o) != all_outs.end()) {
        throw ValueError("--out: " + o + " is given twice");
      }
      all_outs.push_back(o);
      output_check_writable(o, p.overwrite);
    }
  }
  // Several ranks when started by `unwedge launch`, torchrun or SLURM (RANK/WORLD_SIZE...):
  // the collectives here are small CPU messages, so Gloo serves whatever the device.
  Distributed dist(dist_config_from_environ());
  if (!dist.is_main()) log_set_level(LogLevel::quiet);
  dist.check_same("the restore command (model, inputs, outputs, options)",
                  p.model + "|" + g.command_line);
  dist.barrier();  // every rank has checked the outputs before any is written

  LoadedCheckpoint ck = checkpoint_load(p.model);
  const CheckpointInfo& info = ck.info;
  if (info.domain == "tilt-series") {
    throw ValueError(p.model + " is a tilt-series-domain model (trained on " +
                     (info.inputs.empty() ? std::string("?") : info.inputs.front()) + ") but " +
                     jobs[0].ins[0] + (pair ? " and " + jobs[0].ins[1] + " are" : " is") +
                     " given as a tomogram: give --tilt-series TS.mrc --angles TS.tlt");
  }
  RestoreOptions ro = p.restore;
  ro.progress = !p.no_progress && !g.quiet && dist.is_main();
  ro.device = restore_device(p, info, dist.world_size() > 1 ? dist.config().local_rank : -1);
  if (ro.tile == 0) ro.tile = info.train_options.value("patch", int64_t(64)) + ro.overlap;
  precision_parse(ro.precision, "--precision");
  if (pair != ck.method->needs_halves()) {
    log_warn("model {} was trained on {}; restoring {}", ck.method->name(),
             ck.method->needs_halves() ? "half tomograms" : "one tomogram",
             pair ? "pairs of halves" : "tomograms");
  }

  MrcReadOptions rdo{p.permissive};
  std::vector<std::array<int64_t, 3>> shapes;
  for (auto& j : jobs) {
    for (const auto& path : j.ins) j.files.push_back(std::make_unique<MrcFile>(path, rdo));
    if (pair && j.files[1]->shape() != j.files[0]->shape()) {
      throw ShapeError("halves differ in shape: " + j.ins[0] + " and " + j.ins[1]);
    }
    shapes.push_back(j.files[0]->shape());
  }
  const std::vector<WorkSlab> mine = partition_for_rank(shapes, dist.rank(), dist.world_size());
  if (dist.world_size() > 1) {
    log_info("{} ranks share {} tomogram(s) {}", dist.world_size(), n_jobs,
             n_jobs >= size_t(dist.world_size()) ? "by tomogram" : "by slabs along Z");
  }
  for (const WorkSlab& s : mine) {
    restore_job(p, g, *ck.method, info, jobs[size_t(s.item)], s, ro, dist);
  }
}

}  // namespace

void add_restore_command(CLI::App& root, GlobalOptions& g) {
  auto p = std::make_shared<RestoreParams>();
  CLI::App* cmd = root.add_subcommand(
      "restore", "Restore a tomogram (--in) or a pair of halves (--even/--odd) with a trained "
                 "model; tiled, streamed, written in the input's scale and header");
  cmd->add_option("--model", p->model, "Model file from `unwedge train` (.uwm)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--in", p->in,
                  "Tomogram(s) to restore, MRC (several: one --out each, paired by position; "
                  "under launch/torchrun/SLURM split across ranks)");
  cmd->add_option("--even", p->even,
                  "Even half(s), MRC (with --odd: the restored halves averaged)");
  cmd->add_option("--odd", p->odd, "Odd half(s), MRC, paired with --even by position");
  cmd->add_option("--tilt-series", p->tilt_series,
                  "Aligned tilt series, MRC stack, for a model trained with --domain "
                  "tilt-series: each tilt image is denoised, then back-projected")
      ->check(CLI::ExistingFile);
  cmd->add_option("--angles", p->angles,
                  "Tilt angles, degrees, one per section (.tlt); default: the model's")
      ->check(CLI::ExistingFile);
  cmd->add_option("--thickness", p->thickness,
                  "Tilt series: tomogram thickness Z, voxels (0 = the model's)")
      ->capture_default_str();
  cmd->add_option("--width", p->width, "Tilt series: tomogram width X, voxels (0 = the series')")
      ->capture_default_str();
  cmd->add_option("--filter", p->filter, "Tilt series: WBP row weighting, ramp | sirt-like | none")
      ->capture_default_str()
      ->check(CLI::IsMember({"ramp", "sirt-like", "none"}));
  cmd->add_option("--sirt-iterations", p->sirt_iterations,
                  "Tilt series: iterations the sirt-like filter mimics")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--lowpass", p->lowpass,
                  "Tilt series: WBP Hamming cut-off, cycles/pixel (Nyquist 0.5; 0 = off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--save-tilt-series", p->save_tilt_series,
                  "Tilt series: also write the denoised tilt series here, MRC");
  cmd->add_option("--out", p->out, "Restored tomogram(s) to write, MRC, one per input")
      ->required();
  cmd->add_flag("--save-halves", p->restore.save_halves,
                "With --even/--odd: also write OUT_even.mrc and OUT_odd.mrc (default: off)");
  cmd->add_option("--tile", p->restore.tile,
                  "Tile edge, voxels (0 = training patch + overlap), rounded up to the "
                  "network's size multiple")
      ->capture_default_str();
  cmd->add_option("--overlap", p->restore.overlap,
                  "Overlap of neighbouring tiles, voxels; tiles equal a whole-volume pass when "
                  "it covers the network's receptive field")
      ->capture_default_str();
  cmd->add_option("--batch", p->restore.batch, "Tiles per forward pass")->capture_default_str();
  cmd->add_option("--device", p->device,
                  "model | auto | cpu | cuda | cuda:N (model: the training device when "
                  "available, else cpu; with several ranks, cuda means cuda:LOCAL_RANK)")
      ->capture_default_str();
  cmd->add_option("--precision", p->restore.precision,
                  "Network arithmetic: fp32 | bf16 (autocast; blending and output stay float32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--norm", p->norm,
                  "Scale: input (robust statistics of this input, as in training) | model "
                  "(the first training tomogram's)")
      ->capture_default_str();
  cmd->add_option("--mode", p->mode, "MRC mode written: 2 (float32) or 12 (float16)")
      ->check(CLI::IsMember({2, 12}))
      ->capture_default_str();
  cmd->add_flag("--no-progress", p->no_progress, "No progress bar");
  add_overwrite_flag(*cmd, p->overwrite);
  add_permissive_flag(*cmd, p->permissive);
  cmd->callback([p, &g] { run_restore(*p, g); });
}

}  // namespace unwedge::cli
