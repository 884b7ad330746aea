#include "unwedge/infer/restore_job.h"

#include <algorithm>
#include <filesystem>
#include <memory>

#include <torch/torch.h>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/device.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/dist/shared_writers.h"
#include "unwedge/infer/partition.h"
#include "unwedge/io/mrc.h"
#include "unwedge/io/relion.h"
#include "unwedge/io/tilt.h"

namespace unwedge {

namespace {

/// One tomogram (or pair) to restore and the file(s) it produces.
struct RestoreItem {
  std::vector<std::string> ins;   ///< tomogram, or even and odd halves
  std::vector<std::string> outs;  ///< restored; with save_halves also _even and _odd
  std::vector<std::unique_ptr<MrcFile>> files;

  std::vector<const MrcFile*> file_ptrs() const {
    std::vector<const MrcFile*> p;
    for (const auto& f : files) p.push_back(f.get());
    return p;
  }
};

MrcWriteOptions write_options(const RestoreFilesOptions& o) {
  return MrcWriteOptions{o.mode, o.overwrite, /*keep_ext_header=*/false, o.label};
}

std::string trained_on(const CheckpointInfo& info) {
  return info.inputs.empty() ? std::string("?") : info.inputs.front();
}

/// Tilt-series models: denoise each tilt image (tiled in Y and X, one section per tile), then
/// weighted back-projection into the tomogram, written with the series' voxel size.
RestoreFilesResult restore_tilt_series(const RestoreFilesOptions& o, const ProgressFn& progress) {
  const TiltSeriesInput& ts = o.tilt_series;
  if (!o.in.empty() || !o.even.empty() || !o.odd.empty()) {
    throw ValueError("give either --tilt-series or --in/--even/--odd, not both");
  }
  if (o.out.size() != 1) {
    throw ValueError("--tilt-series gives one tomogram: give one --out (got " +
                     std::to_string(o.out.size()) + ")");
  }
  if (o.restore.save_halves) throw ValueError("--save-halves needs --even/--odd, not --tilt-series");
  const std::string out = o.out.front();
  output_check_writable(out, o.overwrite);
  if (!ts.save_series.empty()) output_check_writable(ts.save_series, o.overwrite);

  LoadedCheckpoint ck = checkpoint_load(o.model);
  const CheckpointInfo& info = ck.info;
  if (info.domain != "tilt-series") {
    throw ValueError(o.model + " is a " + info.domain + "-domain model (trained on " +
                     trained_on(info) + ") but --tilt-series " + ts.series +
                     " is a tilt series: give it a tomogram (--in), or train with "
                     "--domain tilt-series");
  }
  const std::vector<double> angles = ts.angles.empty() ? info.angles_deg : tilt_read(ts.angles);
  const std::string angles_from = ts.angles.empty() ? o.model + " (training angles)" : ts.angles;
  MrcFile f(ts.series, MrcReadOptions{o.permissive});
  for (const auto& w : f.warnings()) log_warn("{}: {}", ts.series, w);
  model_warn_voxel_size(info, o.model, f);
  const auto shape = f.shape();  // [n_tilts, Y, X]
  if (int64_t(angles.size()) != shape[0]) {
    throw ValueError(angles_from + " has " + std::to_string(angles.size()) + " angles but " +
                     ts.series + " has " + std::to_string(shape[0]) + " sections (tilts)");
  }
  const int64_t thickness = ts.thickness > 0 ? ts.thickness : info.thickness;
  if (thickness < 2) {
    throw ValueError("--thickness " + std::to_string(thickness) + ": give the tomogram's Z "
                     "(>= 2 voxels); " + o.model + " stores none");
  }

  RestoreOptions ro = o.restore;
  ro.device = model_device(info, o.device);
  if (ro.tile == 0) ro.tile = info.train_options.value("patch", int64_t(64)) + ro.overlap;
  if (ro.tile_z == 0) ro.tile_z = 1;  // one tilt image per tile; batch tiles per pass
  const NormStats stats = model_norm_stats(info, o.norm, {&f}, o.model);
  log_info("denoising {} tilt images of {} x {} with {} (step {}), tiles {} overlap {} on {}",
           shape[0], shape[2], shape[1], ck.method->name(), info.step, ro.tile, ro.overlap,
           ro.device);

  at::Tensor series = torch::empty({shape[0], shape[1], shape[2]}, torch::kFloat);  // [n, Y, X]
  SlabSink sink = [&series, stats](int64_t z0, const at::Tensor& slab) {
    series.slice(0, z0, z0 + slab.size(0)).copy_(norm_invert(slab, stats));
  };
  restore_stream(*ck.method, shape, {tile_reader_normalised(f, stats)}, {sink}, ro, progress);

  RestoreFilesResult res{ck.method->name(), info.step, ro.device, ro.tile, {}};
  const MrcWriteOptions mo = write_options(o);
  if (!ts.save_series.empty()) {
    mrc_write(ts.save_series, Volume{series, f.meta()}, mo);
    log_info("wrote {}", ts.save_series);
    res.written.push_back(ts.save_series);
  }
  VolumeMeta meta = f.meta();
  meta.voxel_size[2] = meta.voxel_size[0];  // isotropic voxels: Z sampled like X
  meta.origin = {0.0, 0.0, 0.0};
  meta.nstart = {0, 0, 0};
  meta.ext_header.clear();
  meta.exttyp.clear();
  log_info("back-projecting {} tilts ({:.1f} to {:.1f} deg) -> {} x {} x {} (X x Y x Z)",
           angles.size(), *std::min_element(angles.begin(), angles.end()),
           *std::max_element(angles.begin(), angles.end()), ts.width > 0 ? ts.width : shape[2],
           shape[1], thickness);
  mrc_write(out, Volume{wbp(series, angles, thickness, ts.wbp, ts.width), meta}, mo);
  log_info("wrote {}", out);
  res.written.push_back(out);
  return res;
}

/// Restores sections [slab.z0, slab.z1) of `item`. A whole slab is written and committed by this
/// rank alone; a partial one goes into the file rank 0 created, and the ranks combine the header
/// statistics before rank 0 renames it (every rank calls this for every split item, in order).
void restore_item(const RestoreFilesOptions& o, Method& method, const CheckpointInfo& info,
                  const RestoreItem& item, const WorkSlab& slab, RestoreOptions ro,
                  Distributed& dist, const ProgressFn& progress, std::vector<std::string>& written) {
  const auto shape = item.files[0]->shape();
  const NormStats stats = model_norm_stats(info, o.norm, item.file_ptrs(), o.model);
  std::vector<TileReader> readers;
  for (const auto& f : item.files) readers.push_back(tile_reader_normalised(*f, stats));
  const bool shared = !slab.whole;
  std::vector<std::unique_ptr<MrcSlabWriter>> writers =
      shared_writers_open(item.outs, shape, item.files[0]->meta(), write_options(o), shared, dist);
  std::vector<SlabSink> sinks;
  for (auto& w : writers) sinks.push_back(slab_sink_to_input_scale(*w, stats));
  log_info("restoring {} (sections {}..{} of {}) with {} (step {}), tiles {} overlap {} on {} "
           "in {}; scale mean {:.5g} std {:.5g}",
           item.ins.size() == 2 ? item.ins[0] + " + " + item.ins[1] : item.ins[0], slab.z0,
           slab.z1, shape[0], method.name(), info.step, ro.tile, ro.overlap, ro.device,
           ro.precision, stats.mean, stats.std);
  ro.z_begin = slab.z0;
  ro.z_end = slab.z1;
  if (slab.z1 > slab.z0) restore_stream(method, shape, readers, sinks, ro, progress);
  shared_writers_commit(writers, shared, dist);
  for (const auto& out : item.outs) {
    if (!shared) {
      log_info("wrote {}", out);
    } else if (dist.is_main()) {
      log_info("wrote {} ({} ranks)", out, dist.world_size());
    }
    written.push_back(out);
  }
}

}  // namespace

std::string restore_half_path(const std::string& out, const std::string& half) {
  std::filesystem::path p(out);
  const std::string ext = p.extension().string();
  p.replace_extension();
  return p.string() + "_" + half + (ext.empty() ? ".mrc" : ext);
}

nlohmann::json restore_files_options_json(const RestoreFilesOptions& o) {
  const RestoreOptions& r = o.restore;
  return {{"model", o.model},
          {"in", o.in},
          {"even", o.even},
          {"odd", o.odd},
          {"out", o.out},
          {"tilt_series", {{"series", o.tilt_series.series},
                           {"angles", o.tilt_series.angles},
                           {"thickness", o.tilt_series.thickness},
                           {"width", o.tilt_series.width},
                           {"filter", int(o.tilt_series.wbp.filter)},
                           {"sirt_iterations", o.tilt_series.wbp.sirt_iterations},
                           {"lowpass", o.tilt_series.wbp.lowpass},
                           {"save_series", o.tilt_series.save_series}}},
          {"tile", r.tile},
          {"tile_z", r.tile_z},
          {"overlap", r.overlap},
          {"batch", r.batch},
          {"precision", r.precision},
          {"save_halves", r.save_halves},
          {"flips", r.flips},
          {"device", o.device},
          {"norm", norm_source_name(o.norm)},
          {"mode", o.mode},
          {"overwrite", o.overwrite},
          {"permissive", o.permissive}};
}

std::string restore_star_path(const RestoreFilesOptions& o) {
  if (!o.out_star.empty()) return o.out_star;
  return (std::filesystem::path(o.out_dir) / "tomograms.star").string();
}

RestoreFilesOptions restore_files_from_star(const RestoreFilesOptions& opts) {
  if (opts.star.empty()) {
    if (!opts.out_dir.empty() || !opts.out_star.empty()) {
      throw ValueError("--out-dir and --out-star go with --star (a RELION 5 tomograms table)");
    }
    return opts;
  }
  RestoreFilesOptions o = opts;
  if (!o.in.empty() || !o.even.empty() || !o.odd.empty() || !o.out.empty() ||
      !o.tilt_series.series.empty()) {
    throw ValueError("--star " + o.star + " lists the tomograms: give --out-dir, and no --in/"
                     "--even/--odd/--out/--tilt-series with it");
  }
  if (o.out_dir.empty()) throw ValueError("--star " + o.star + " needs --out-dir");
  const RelionTomograms t = relion_tomograms_read(o.star);
  const bool needs_halves = checkpoint_load(o.model).method->needs_halves();
  const StarLoop& g = t.star.block("global")->loops.front();
  const bool has_tomogram = g.column("rlnTomoReconstructedTomogram") >= 0;
  if (needs_halves || !has_tomogram) {
    const std::string why = needs_halves ? "the model was trained on half tomograms"
                                         : "no tomogram column: the halves are restored";
    o.even = relion_column(t, "rlnTomoReconstructedTomogramHalf1", why);
    o.odd = relion_column(t, "rlnTomoReconstructedTomogramHalf2", why);
  } else {
    o.in = relion_column(t, "rlnTomoReconstructedTomogram", "the tomograms to restore");
  }
  for (const RelionTomogram& tomo : t.tomograms) {
    o.out.push_back((std::filesystem::path(o.out_dir) / (tomo.name + ".mrc")).string());
  }
  o.star.clear();
  o.out_dir.clear();
  o.out_star.clear();
  return o;
}

RestoreFilesResult restore_files(const RestoreFilesOptions& o_in, Distributed* dist_in,
                                 const ProgressFn& progress) {
  Distributed single{DistConfig{}};
  Distributed& dist = dist_in ? *dist_in : single;
  if (!o_in.star.empty()) {
    // Every check (the table, the outputs) before the folder is made.
    const RestoreFilesOptions o = restore_files_from_star(o_in);
    const std::string out_star = restore_star_path(o_in);
    const std::filesystem::path star_dir = std::filesystem::path(out_star).parent_path();
    if (star_dir.empty() || std::filesystem::is_directory(star_dir)) {
      output_check_writable(out_star, o.overwrite);
    }
    for (const std::string& out : o.out) {
      if (std::filesystem::is_directory(o_in.out_dir)) output_check_writable(out, o.overwrite);
    }
    if (dist.is_main()) {
      std::filesystem::create_directories(o_in.out_dir);
      if (!star_dir.empty()) std::filesystem::create_directories(star_dir);
    }
    dist.barrier();
    RestoreFilesResult res = restore_files(o, &dist, progress);
    dist.barrier();  // every rank's tomograms are written
    if (dist.is_main()) {
      const RelionTomograms t = relion_tomograms_read(o_in.star);
      std::vector<RelionOutput> outs;
      for (const std::string& out : o.out) outs.push_back(relion_output_from_mrc(out));
      star_write(out_star, relion_tomograms_with_outputs(t, outs), o.overwrite);
      log_info("wrote {} ({} tomograms in rlnTomoReconstructedTomogramDenoised)", out_star,
               outs.size());
    }
    dist.barrier();
    res.written.push_back(out_star);
    return res;
  }
  const RestoreFilesOptions& o = restore_files_from_star(o_in);
  if (!o.tilt_series.series.empty() || !o.tilt_series.angles.empty()) {
    if (o.tilt_series.series.empty()) throw ValueError("--angles needs --tilt-series");
    if (dist.world_size() > 1) {
      throw ValueError("--tilt-series restoration runs on one rank; start it without "
                       "launch/torchrun/srun (several ranks: restore tomograms with --in)");
    }
    return restore_tilt_series(o, progress);
  }
  const bool pair = !o.even.empty() || !o.odd.empty();
  if (pair && !o.in.empty()) throw ValueError("give either --in or --even/--odd, not both");
  if (pair && o.even.size() != o.odd.size()) {
    throw ValueError("--even lists " + std::to_string(o.even.size()) + " files but --odd lists " +
                     std::to_string(o.odd.size()) + " (halves are paired by position)");
  }
  if (!pair && o.in.empty()) throw ValueError("no input: give --in, or --even and --odd");
  const size_t n_items = pair ? o.even.size() : o.in.size();
  if (o.out.size() != n_items) {
    throw ValueError("--out lists " + std::to_string(o.out.size()) + " files for " +
                     std::to_string(n_items) + " inputs (paired by position)");
  }
  std::vector<RestoreItem> items(n_items);
  std::vector<std::string> all_outs;
  for (size_t i = 0; i < n_items; ++i) {
    RestoreItem& it = items[i];
    it.ins = pair ? std::vector<std::string>{o.even[i], o.odd[i]} : std::vector<std::string>{o.in[i]};
    it.outs = {o.out[i]};
    if (pair && o.restore.save_halves) {
      it.outs.push_back(restore_half_path(o.out[i], "even"));
      it.outs.push_back(restore_half_path(o.out[i], "odd"));
    }
    for (const auto& out : it.outs) {
      if (std::find(all_outs.begin(), all_outs.end(), out) != all_outs.end()) {
        throw ValueError("--out: " + out + " is given twice");
      }
      all_outs.push_back(out);
      output_check_writable(out, o.overwrite);
    }
  }
  // The collectives here are small CPU messages, so Gloo serves whatever the device.
  dist.check_same("the restore job (model, inputs, outputs, options)",
                  restore_files_options_json(o).dump());
  dist.barrier();  // every rank has checked the outputs before any is written

  LoadedCheckpoint ck = checkpoint_load(o.model);
  const CheckpointInfo& info = ck.info;
  if (info.domain == "tilt-series") {
    throw ValueError(o.model + " is a tilt-series-domain model (trained on " + trained_on(info) +
                     ") but " + items[0].ins[0] +
                     (pair ? " and " + items[0].ins[1] + " are" : " is") +
                     " given as a tomogram: give --tilt-series TS.mrc --angles TS.tlt");
  }
  RestoreOptions ro = o.restore;
  ro.device = model_device(info, o.device, dist.world_size() > 1 ? dist.config().local_rank : -1);
  if (ro.tile == 0) ro.tile = info.train_options.value("patch", int64_t(64)) + ro.overlap;
  ro.precision = precision_resolve(ro.precision, device_parse(ro.device));
  precision_parse(ro.precision, "--precision");
  if (pair != ck.method->needs_halves()) {
    log_warn("model {} was trained on {}; restoring {}", ck.method->name(),
             ck.method->needs_halves() ? "half tomograms" : "one tomogram",
             pair ? "pairs of halves" : "tomograms");
  }

  const MrcReadOptions rdo{o.permissive};
  std::vector<std::array<int64_t, 3>> shapes;
  for (auto& it : items) {
    for (const auto& path : it.ins) it.files.push_back(std::make_unique<MrcFile>(path, rdo));
    if (pair) halves_check_same_grid(*it.files[0], *it.files[1]);
    model_warn_voxel_size(info, o.model, *it.files[0]);
    shapes.push_back(it.files[0]->shape());
  }
  const std::vector<WorkSlab> mine = partition_for_rank(shapes, dist.rank(), dist.world_size());
  if (dist.world_size() > 1) {
    log_info("{} ranks share {} tomogram(s) {}", dist.world_size(), n_items,
             n_items >= size_t(dist.world_size()) ? "by tomogram" : "by slabs along Z");
  }
  RestoreFilesResult res{ck.method->name(), info.step, ro.device, ro.tile, {}};
  const ProgressFn bar = dist.is_main() ? progress : ProgressFn{};
  for (const WorkSlab& s : mine) {
    restore_item(o, *ck.method, info, items[size_t(s.item)], s, ro, dist, bar, res.written);
  }
  return res;
}

}  // namespace unwedge
