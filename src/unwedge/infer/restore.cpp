#include "unwedge/infer/restore.h"

#include <algorithm>

#include "unwedge/core/device.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/core/progress.h"
#include "unwedge/io/mrc.h"
#include "unwedge/ops/rotate.h"

namespace unwedge {

namespace {


struct TileJob {
  size_t iy, ix;
};

}  // namespace

TileReader tile_reader_normalised(const MrcFile& file, const NormStats& stats) {
  const MrcFile* f = &file;
  return [f, stats](int64_t z0, int64_t z1, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
    // Tile rows come in increasing z0: the sections before this row are done with.
    f->release_before(z0);
    at::Tensor t = f->read_box(z0, z1, y0, y1, x0, x1);
    check_finite(t, f->path());
    return norm_apply(t, stats);
  };
}

SlabSink slab_sink_to_input_scale(MrcSlabWriter& writer, const NormStats& stats) {
  MrcSlabWriter* w = &writer;
  return [w, stats](int64_t z0, const at::Tensor& slab) { w->write_slab(z0, norm_invert(slab, stats)); };
}

int64_t batches_shrinking_on_oom(int64_t n, int64_t batch,
                                 const std::function<std::vector<at::Tensor>(int64_t, int64_t)>& compute,
                                 const std::function<void(int64_t, int64_t, std::vector<at::Tensor>&)>& consume,
                                 const std::function<void(int64_t, int64_t)>& on_shrink,
                                 const std::string& what) {
  if (batch < 1) throw ValueError("batch: " + std::to_string(batch));
  int64_t step = batch;
  for (int64_t j0 = 0; j0 < n;) {
    const int64_t j1 = std::min(n, j0 + step);
    std::vector<at::Tensor> res;
    try {
      res = compute(j0, j1);
    } catch (const c10::OutOfMemoryError& e) {
      if (j1 - j0 == 1) {
        throw Error("out of memory with " + what + ": give a smaller --tile (" +
                    std::string(e.what_without_backtrace()).substr(0, 200) + ")");
      }
      const int64_t from = j1 - j0;
      step = from / 2;
      if (on_shrink) on_shrink(from, step);
      continue;
    }
    consume(j0, j1, res);
    j0 = j1;
  }
  return step;
}

TilePlan restore_plan(const Method& method, const std::array<int64_t, 3>& shape,
                      const RestoreOptions& opts) {
  if (opts.tile < 1) throw ValueError("tile: " + std::to_string(opts.tile) + " voxels");
  if (opts.overlap < 0 || opts.overlap >= opts.tile) {
    throw ValueError("overlap: " + std::to_string(opts.overlap) + " voxels must be in [0, tile " +
                     std::to_string(opts.tile) + ")");
  }
  if (opts.tile_z < 0) throw ValueError("tile depth: " + std::to_string(opts.tile_z) + " voxels");
  if (opts.flips != 1 && opts.flips != 2 && opts.flips != 4) {
    throw ValueError("flips: " + std::to_string(opts.flips) + " (1, 2 or 4)");
  }
  const auto rf = method.receptive_field();
  const auto align = method.size_multiple();
  const int64_t tz = opts.tile_z > 0 ? opts.tile_z : opts.tile;
  TilePlan plan = tile_plan_make(shape, {tz, opts.tile, opts.tile}, opts.overlap, align, rf);
  if (rf[0] == 1) {
    // Sections are restored independently (planar network): Z tiles need no overlap.
    plan.axes[0] = tile_axis_make(shape[0], tz, /*overlap=*/0, align[0], /*halo=*/0);
  }
  return plan;
}

void restore_stream(Method& method, const std::array<int64_t, 3>& shape,
                    const std::vector<TileReader>& inputs, const std::vector<SlabSink>& outputs,
                    const RestoreOptions& opts, const ProgressFn& progress) {
  if (inputs.empty() || inputs.size() > 2) throw ValueError("restore: 1 or 2 inputs expected");
  const bool pair = inputs.size() == 2;
  const size_t n_out = pair && opts.save_halves ? 3 : 1;
  if (outputs.size() != n_out) throw ValueError("restore: wrong number of outputs");
  if (opts.batch < 1) throw ValueError("batch: " + std::to_string(opts.batch));
  const torch::Device device = device_parse(opts.device);
  const c10::ScalarType precision =
      precision_parse(precision_resolve(opts.precision, device), "precision");
  const TilePlan plan = restore_plan(method, shape, opts);
  const TileAxis &az = plan.axes[0], &ay = plan.axes[1], &ax = plan.axes[2];
  // The slab of output sections to produce, and the tile rows that touch it.
  const int64_t zb = opts.z_begin, ze = opts.z_end < 0 ? shape[0] : opts.z_end;
  if (zb < 0 || ze > shape[0] || zb > ze) {
    throw ValueError("restore: sections [" + std::to_string(zb) + ", " + std::to_string(ze) +
                     ") are outside [0, " + std::to_string(shape[0]) + ")");
  }
  std::vector<size_t> rows;
  for (size_t iz = 0; iz < az.starts.size(); ++iz) {
    if (az.starts[iz] < ze && az.starts[iz] + az.tile > zb) rows.push_back(iz);
  }
  if (rows.empty()) return;

  // Separable weight sums for the final division, on the padded grid.
  at::Tensor sz = az.weight_sum(), sy = ay.weight_sum(), sx = ax.weight_sum();
  at::Tensor syx = (sy.view({-1, 1}) * sx.view({1, -1}));  // [Y', X']
  std::vector<at::Tensor> wy(ay.starts.size()), wx(ax.starts.size());
  for (size_t i = 0; i < wy.size(); ++i) wy[i] = ay.window(i);
  for (size_t i = 0; i < wx.size(); ++i) wx[i] = ax.window(i);

  // Accumulators for sections [base, base + acc.size(1)) of the padded grid.
  std::vector<at::Tensor> acc(n_out);
  int64_t base = az.starts[rows.front()], flushed = base;
  auto flush_to = [&](int64_t z_end) {  // sections [flushed, z_end) are final
    z_end = std::min(z_end, az.dim);
    if (z_end <= flushed) return;
    const int64_t a = std::max(flushed, zb), b = std::min(z_end, ze);  // inside the slab
    // A few sections at a time, so the temporaries stay small next to the accumulators.
    const int64_t chunk = 8;
    for (int64_t c0 = a; c0 < b; c0 += chunk) {
      const int64_t c1 = std::min(b, c0 + chunk);
      at::Tensor den = sz.slice(0, c0, c1).view({-1, 1, 1}) * syx;  // [z, Y', X']
      for (size_t k = 0; k < n_out; ++k) {
        at::Tensor part = acc[k].slice(0, c0 - base, c1 - base) / den;
        outputs[k](c0, part.slice(1, 0, ay.dim).slice(2, 0, ax.dim).contiguous());
      }
    }
    flushed = z_end;
  };

  const int64_t ty = ay.tile, tx = ax.tile, tz = az.tile;
  auto read_tile = [&](const TileReader& r, int64_t z0, int64_t y0, int64_t x0) {
    // Padded-grid box; the part beyond the volume is zero (the normalised mean).
    at::Tensor t = torch::zeros({tz, ty, tx}, torch::kFloat);
    int64_t z1 = std::min(z0 + tz, az.dim), y1 = std::min(y0 + ty, ay.dim),
            x1 = std::min(x0 + tx, ax.dim);
    t.slice(0, 0, z1 - z0).slice(1, 0, y1 - y0).slice(2, 0, x1 - x0)
        .copy_(r(z0, z1, y0, y1, x0, x1));
    return t;
  };

  torch::NoGradGuard no_grad;
  method.train(false);
  method.to(device);
  const int64_t n_tiles = int64_t(rows.size() * ay.starts.size() * ax.starts.size());
  Progress bar("restore", n_tiles, "tile", progress);
  int64_t done = 0;
  int64_t batch = opts.batch;  // halved for the rest of the run when the device runs out of memory
  // The network in `precision`; its outputs are taken back to float32 before blending.
  auto net = [&](auto&& fn) {
    AutocastGuard amp(precision, device);
    return at::Tensor(fn()).to(torch::kCPU, torch::kFloat);
  };
  // f of the inputs, averaged over the first opts.flips wedge-keeping flips (each flip applied
  // to every input and undone on the output).
  const auto& flip_set = wedge_keeping_flips();
  auto averaged = [&](auto&& f, const std::vector<at::Tensor>& in) {
    at::Tensor sum;
    for (int64_t k = 0; k < opts.flips; ++k) {
      const auto& dims = flip_set[size_t(k)];
      std::vector<at::Tensor> fl;
      for (const auto& t : in) fl.push_back(flip_dims(t, dims));
      at::Tensor r = flip_dims(net([&] { return f(fl); }), dims);
      sum = sum.defined() ? sum + r : r;
    }
    return opts.flips == 1 ? sum : sum / double(opts.flips);
  };
  for (size_t iz : rows) {
    const int64_t z0 = az.starts[iz];
    flush_to(z0);
    // Re-base the accumulators at z0, keeping what earlier rows added to [z0, old end).
    for (size_t k = 0; k < n_out; ++k) {
      acc[k] = tile_accumulator_rebase(acc[k], base, z0, tz, ay.padded, ax.padded);
    }
    base = z0;
    const at::Tensor wz = az.window(iz);

    std::vector<TileJob> jobs;
    for (size_t iy = 0; iy < ay.starts.size(); ++iy) {
      for (size_t ix = 0; ix < ax.starts.size(); ++ix) jobs.push_back({iy, ix});
    }
    // Each batch's tiles through the network (halved batches when the device runs out of
    // memory), then blended into the accumulators.
    auto compute = [&](int64_t j0, int64_t j1) {
      std::vector<at::Tensor> ins[2];
      for (int64_t j = j0; j < j1; ++j) {
        for (size_t r = 0; r < inputs.size(); ++r) {
          ins[r].push_back(read_tile(inputs[r], z0, ay.starts[jobs[size_t(j)].iy],
                                     ax.starts[jobs[size_t(j)].ix]));
        }
      }
      std::vector<at::Tensor> res;  // each [b, 1, tz, ty, tx] on the CPU
      at::Tensor a = torch::stack(ins[0]).unsqueeze(1).to(device);  // [b, 1, tz, ty, tx]
      auto one = [&](const std::vector<at::Tensor>& v) { return method.restore(v[0]); };
      if (!pair) {
        res.push_back(averaged(one, {a}));
      } else {
        at::Tensor b = torch::stack(ins[1]).unsqueeze(1).to(device);
        if (opts.save_halves) {
          at::Tensor ra = averaged(one, {a});
          at::Tensor rb = averaged(one, {b});
          res.push_back((ra + rb) * 0.5);
          res.push_back(ra);
          res.push_back(rb);
        } else {
          res.push_back(averaged(
              [&](const std::vector<at::Tensor>& v) { return method.restore_pair(v[0], v[1]); },
              {a, b}));
        }
      }
      return res;
    };
    auto consume = [&](int64_t j0, int64_t j1, std::vector<at::Tensor>& res) {
      for (int64_t j = j0; j < j1; ++j) {
        const auto& job = jobs[size_t(j)];
        at::Tensor w = tile_window_3d(wz, wy[job.iy], wx[job.ix]);  // [tz, ty, tx]
        const int64_t y0 = ay.starts[job.iy], x0 = ax.starts[job.ix];
        for (size_t k = 0; k < n_out; ++k) {
          acc[k].slice(1, y0, y0 + ty).slice(2, x0, x0 + tx) += res[k][j - j0][0] * w;
        }
      }
      done += j1 - j0;
      bar.update(done);
    };
    auto shrink = [&](int64_t from, int64_t to) {
      log_warn("restore: out of memory on {} with {} tiles per pass; now {} (--batch)",
               opts.device, from, to);
    };
    batch = batches_shrinking_on_oom(
        int64_t(jobs.size()), batch, compute, consume, shrink,
        fmt::format("one tile of {}x{}x{} on {}", tz, ty, tx, opts.device));
  }
  flush_to(ze);
  bar.finish();
}

at::Tensor restore_volume(Method& method, const at::Tensor& vol, const RestoreOptions& opts,
                          const ProgressFn& progress) {
  at::Tensor v = vol.to(torch::kFloat).contiguous();
  at::Tensor out = torch::empty_like(v);
  TileReader rd = [&](int64_t z0, int64_t z1, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
    return v.slice(0, z0, z1).slice(1, y0, y1).slice(2, x0, x1);
  };
  SlabSink sink = [&](int64_t z0, const at::Tensor& slab) {
    out.slice(0, z0, z0 + slab.size(0)).copy_(slab);
  };
  restore_stream(method, {v.size(0), v.size(1), v.size(2)}, {rd}, {sink}, opts, progress);
  return out;
}

}  // namespace unwedge
