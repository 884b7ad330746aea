#include "unwedge/infer/sample.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>

#include "unwedge/core/device.h"
#include "unwedge/core/error.h"
#include "unwedge/core/progress.h"
#include "unwedge/eval/metrics.h"
#include "unwedge/methods/bootstrap.h"

namespace unwedge {

namespace {

// Accumulator slots (one slab of the padded grid each).
enum Slot : size_t { kMean = 0, kVar, kMeanSq, kLower, kUpper, kFirstSample };

struct TileJob {
  size_t iy, ix;
};

/// Moments and bounds of one tile: samples [n, V], normalised weights [n].
struct TileSummary {
  at::Tensor mean, var, lower, upper;  // [V]
};

TileSummary tile_summary(const at::Tensor& x, const at::Tensor& w, const SampleOptions& o,
                         double z, at::IntArrayRef tile) {
  TileSummary s;
  at::Tensor wc = w.view({-1, 1});                          // [n, 1]
  s.mean = (x * wc).sum(0);                                 // [V]
  s.var = ((x - s.mean).pow(2) * wc).sum(0);                // [V]
  if (o.std_pool > 0) s.var = gaussian_average(s.var.view(tile), o.std_pool).reshape({-1});
  at::Tensor structure;  // β S_t, [V]
  if (o.std_structure > 0) {
    structure = o.std_structure * structure_power(s.mean.view(tile), o.std_pool).reshape({-1});
    s.var = s.var + structure;
  }
  if (o.bounds == "quantile") {
    s.lower = weighted_quantile(x, w, (1.0 - o.interval) / 2);
    s.upper = weighted_quantile(x, w, (1.0 + o.interval) / 2);
    if (structure.defined()) {  // the structure's z-width in quadrature with the draws'
      const at::Tensor extra = z * z * structure;
      s.lower = s.mean - ((s.mean - s.lower).square() + extra).sqrt();
      s.upper = s.mean + ((s.upper - s.mean).square() + extra).sqrt();
    }
  } else {
    at::Tensor sd = s.var.clamp_min(0).sqrt();
    s.lower = s.mean - z * sd;
    s.upper = s.mean + z * sd;
  }
  return s;
}

}  // namespace

double sample_interval_z(double interval) {
  if (!(interval > 0 && interval < 1)) {
    throw ValueError("interval: " + std::to_string(interval) + " must be in (0, 1)");
  }
  return std::sqrt(2.0) *
         torch::erfinv(torch::tensor(interval, torch::kDouble)).item<double>();
}

at::Tensor weighted_quantile(const at::Tensor& values, const at::Tensor& weights, double q) {
  if (values.dim() < 1 || weights.dim() != 1 || weights.size(0) != values.size(0)) {
    throw ShapeError("weighted_quantile: values [n, ...] and weights [n] expected");
  }
  const int64_t n = values.size(0);
  at::Tensor v = values.reshape({n, -1}).to(torch::kFloat);     // [n, V]
  at::Tensor w = weights.to(torch::kFloat);
  w = w / w.sum();
  auto sorted = v.sort(/*dim=*/0);
  at::Tensor sv = std::get<0>(sorted), si = std::get<1>(sorted);  // [n, V]
  at::Tensor sw = w.index({si});                                   // [n, V]
  at::Tensor pos = sw.cumsum(0) - sw * 0.5;                        // [n, V] mid-points
  // hi: first position with P_i > q (n when none); lo = hi - 1, both clamped to [0, n).
  at::Tensor hi = (pos <= q).sum(0, /*keepdim=*/true);             // [1, V]
  at::Tensor lo = (hi - 1).clamp(0, n - 1);
  hi = hi.clamp(0, n - 1);
  at::Tensor v_lo = sv.gather(0, lo), v_hi = sv.gather(0, hi);
  at::Tensor p_lo = pos.gather(0, lo), p_hi = pos.gather(0, hi);
  at::Tensor span = p_hi - p_lo;
  at::Tensor t = torch::where(span > 0, (q - p_lo) / span.clamp_min(1e-30),
                              torch::zeros_like(span))
                     .clamp(0, 1);
  at::Tensor out = (v_lo + t * (v_hi - v_lo)).squeeze(0);          // [V]
  auto shape = values.sizes().vec();
  shape.erase(shape.begin());
  return out.view(shape);
}

SampleStats sample_stream(Method& method, const std::array<int64_t, 3>& shape,
                          const std::vector<TileReader>& inputs, const SampleSinks& sinks,
                          const SampleOptions& opts, const ProgressFn& progress) {
  const PosteriorOptions& po = opts.posterior;
  std::unique_ptr<EquivariantBootstrap> bootstrap;
  PosteriorMethod* posterior = nullptr;
  if (po.uq == "bootstrap") {
    bootstrap = std::make_unique<EquivariantBootstrap>(method);
    posterior = bootstrap.get();
  } else if (po.uq == "model") {
    posterior = &method_posterior(method);
  } else {
    throw ValueError("uq: '" + po.uq + "' is not model or bootstrap");
  }
  if (inputs.empty() || inputs.size() > 2) throw ValueError("sample: 1 or 2 inputs expected");
  const int64_t n = po.n;
  if (n < 1) throw ValueError("n: " + std::to_string(n) + " draws (need at least 1)");
  if (inputs.size() == 2 && n < 2) {
    throw ValueError("n: " + std::to_string(n) + " draws from two halves (need at least 2)");
  }
  if (opts.bounds != "quantile" && opts.bounds != "gaussian") {
    throw ValueError("bounds: '" + opts.bounds + "' is not quantile or gaussian");
  }
  const double z = sample_interval_z(opts.interval);
  const double cs = opts.std_scale, cb = opts.bounds_scale;
  if (!(cs > 0) || !std::isfinite(cs) || !(cb > 0) || !std::isfinite(cb)) {
    throw ValueError("sample: std scale " + std::to_string(cs) + ", bounds scale " +
                     std::to_string(cb) + " (need finite values > 0)");
  }
  if (!(opts.std_pool >= 0) || !std::isfinite(opts.std_pool)) {
    throw ValueError("sample: std pool " + std::to_string(opts.std_pool) +
                     " voxels (need a finite value >= 0)");
  }
  if (!(opts.std_structure >= 0) || !std::isfinite(opts.std_structure)) {
    throw ValueError("sample: std structure " + std::to_string(opts.std_structure) +
                     " (need a finite value >= 0)");
  }
  if (!sinks.mean || !sinks.std || !sinks.lower || !sinks.upper) {
    throw ValueError("sample: the mean, std, lower and upper sinks are required");
  }
  if (!sinks.samples.empty() && int64_t(sinks.samples.size()) != n) {
    throw ValueError("sample: " + std::to_string(sinks.samples.size()) + " sample sinks for " +
                     std::to_string(n) + " draws");
  }
  if (opts.tiling.batch < 1) throw ValueError("batch: " + std::to_string(opts.tiling.batch));
  const auto t_start = std::chrono::steady_clock::now();
  const torch::Device device = device_parse(opts.tiling.device);
  const TilePlan plan = restore_plan(method, shape, opts.tiling);
  const TileAxis &az = plan.axes[0], &ay = plan.axes[1], &ax = plan.axes[2];
  // The slab of output sections to produce (a rank's share), and the tile rows that touch it.
  const int64_t zb = opts.tiling.z_begin, ze = opts.tiling.z_end < 0 ? shape[0] : opts.tiling.z_end;
  if (zb < 0 || ze > shape[0] || zb > ze) {
    throw ValueError("sample: sections [" + std::to_string(zb) + ", " + std::to_string(ze) +
                     ") are outside [0, " + std::to_string(shape[0]) + ")");
  }
  std::vector<size_t> rows;
  for (size_t iz = 0; iz < az.starts.size(); ++iz) {
    if (az.starts[iz] < ze && az.starts[iz] + az.tile > zb) rows.push_back(iz);
  }

  // Draws per input and their seeds: input r gets n_r draws starting at seed_r.
  std::vector<PosteriorOptions> per_input(inputs.size(), po);
  if (inputs.size() == 2) {
    per_input[0].n = (n + 1) / 2;
    per_input[1].n = n / 2;
    per_input[1].seed = po.seed + uint64_t(per_input[0].n);
  }

  at::Tensor sz = az.weight_sum(), sy = ay.weight_sum(), sx = ax.weight_sum();
  at::Tensor syx = sy.view({-1, 1}) * sx.view({1, -1});  // [Y', X']
  std::vector<at::Tensor> wy(ay.starts.size()), wx(ax.starts.size());
  for (size_t i = 0; i < wy.size(); ++i) wy[i] = ay.window(i);
  for (size_t i = 0; i < wx.size(); ++i) wx[i] = ax.window(i);

  const bool quantile = opts.bounds == "quantile";
  const size_t n_save = sinks.samples.size();
  const size_t n_acc = kFirstSample + n_save;
  std::vector<at::Tensor> acc(n_acc);
  auto slot_used = [&](size_t k) { return quantile || (k != kLower && k != kUpper); };

  // Central XZ plane (y = Y/2, as report slices) of the first draws, on the padded [Z', X'].
  const int64_t yc = ay.dim / 2;
  const int64_t n_xz = std::min<int64_t>(std::max<int64_t>(opts.xz_planes, 0), n);
  std::vector<at::Tensor> xz(static_cast<size_t>(n_xz));
  for (auto& p : xz) p = torch::zeros({az.padded, ax.padded}, torch::kFloat);

  int64_t base = rows.empty() ? 0 : az.starts[rows.front()], flushed = base;
  auto flush_to = [&](int64_t z_end) {  // sections [flushed, z_end) are final
    z_end = std::min(z_end, az.dim);
    if (z_end <= flushed) return;
    const int64_t a = std::max(flushed, zb), e = std::min(z_end, ze);  // inside the slab
    flushed = z_end;
    if (e <= a) return;
    at::Tensor den = sz.slice(0, a, e).view({-1, 1, 1}) * syx;  // [z, Y', X']
    auto part = [&](size_t k) {
      return (acc[k].slice(0, a - base, e - base) / den).slice(1, 0, ay.dim).slice(2, 0, ax.dim);
    };
    at::Tensor mean = part(kMean);
    at::Tensor var = part(kVar) + (part(kMeanSq) - mean * mean);
    at::Tensor sd = var.clamp_min(0).sqrt();
    sinks.mean(a, mean.contiguous());
    sinks.std(a, (cs == 1.0 ? sd : sd * cs).contiguous());
    if (quantile && cb == 1.0) {
      sinks.lower(a, part(kLower).contiguous());
      sinks.upper(a, part(kUpper).contiguous());
    } else if (quantile) {
      sinks.lower(a, (mean - cb * (mean - part(kLower))).contiguous());
      sinks.upper(a, (mean + cb * (part(kUpper) - mean)).contiguous());
    } else {
      sinks.lower(a, (mean - z * cb * sd).contiguous());
      sinks.upper(a, (mean + z * cb * sd).contiguous());
    }
    for (size_t k = 0; k < n_save; ++k) sinks.samples[k](a, part(kFirstSample + k).contiguous());
  };

  const int64_t ty = ay.tile, tx = ax.tile, tz = az.tile;
  auto read_tile = [&](const TileReader& r, int64_t z0, int64_t y0, int64_t x0) {
    at::Tensor t = torch::zeros({tz, ty, tx}, torch::kFloat);  // beyond the volume: 0 (mean)
    int64_t z1 = std::min(z0 + tz, az.dim), y1 = std::min(y0 + ty, ay.dim),
            x1 = std::min(x0 + tx, ax.dim);
    t.slice(0, 0, z1 - z0).slice(1, 0, y1 - y0).slice(2, 0, x1 - x0)
        .copy_(r(z0, z1, y0, y1, x0, x1));
    return t;
  };

  SampleStats st;
  st.draws = n;
  st.ess_min = rows.empty() ? 0 : std::numeric_limits<double>::infinity();
  double ess_sum = 0, acc_sum = 0;
  int64_t acc_count = 0;

  torch::NoGradGuard no_grad;
  method.train(false);
  method.to(device);
  Progress bar("sample", int64_t(rows.size() * ay.starts.size() * ax.starts.size()), "tile",
               progress);
  int64_t done = 0;
  for (size_t iz : rows) {
    const int64_t z0 = az.starts[iz];
    flush_to(z0);
    for (size_t k = 0; k < n_acc; ++k) {
      if (!slot_used(k)) continue;
      acc[k] = tile_accumulator_rebase(acc[k], base, z0, tz, ay.padded, ax.padded);
    }
    base = z0;
    const at::Tensor wz = az.window(iz);

    std::vector<TileJob> jobs;
    for (size_t iy = 0; iy < ay.starts.size(); ++iy) {
      for (size_t ix = 0; ix < ax.starts.size(); ++ix) jobs.push_back({iy, ix});
    }
    for (size_t j0 = 0; j0 < jobs.size(); j0 += size_t(opts.tiling.batch)) {
      const size_t j1 = std::min(jobs.size(), j0 + size_t(opts.tiling.batch));
      const int64_t b = int64_t(j1 - j0);
      std::vector<at::Tensor> samples, log_w;  // per input: [n_r, b, 1, tz, ty, tx], [n_r, b]
      for (size_t r = 0; r < inputs.size(); ++r) {
        std::vector<at::Tensor> ins;
        for (size_t j = j0; j < j1; ++j) {
          ins.push_back(read_tile(inputs[r], z0, ay.starts[jobs[j].iy], ax.starts[jobs[j].ix]));
        }
        at::Tensor sub = torch::stack(ins).unsqueeze(1).to(device);  // [b, 1, tz, ty, tx]
        PosteriorDraws d = posterior->draw(sub, opts.wedge, per_input[r]);
        const int64_t nr = per_input[r].n;
        if (!d.samples.defined() || d.samples.dim() != 6 || d.samples.size(0) != nr ||
            d.samples.size(1) != b || d.log_weights.sizes() != at::IntArrayRef({nr, b})) {
          throw ShapeError("method " + method.name() + ": draw() returned samples " +
                           (d.samples.defined() ? c10::str(d.samples.sizes()) : "undefined") +
                           " and log weights " +
                           (d.log_weights.defined() ? c10::str(d.log_weights.sizes())
                                                    : "undefined") +
                           " for " + std::to_string(nr) + " draws of " + std::to_string(b) +
                           " tiles");
        }
        at::Tensor lw = d.log_weights.to(torch::kCPU, torch::kDouble);
        lw = lw - lw.logsumexp(0, /*keepdim=*/true) + std::log(double(nr) / double(n));
        samples.push_back(d.samples.to(torch::kCPU, torch::kFloat));
        log_w.push_back(lw);
        if (d.acceptance >= 0) {
          acc_sum += d.acceptance * double(b);
          acc_count += b;
        }
      }
      at::Tensor xs = samples.size() == 1 ? samples[0] : torch::cat(samples, 0);  // [n, b, 1, ...]
      at::Tensor w = (log_w.size() == 1 ? log_w[0] : torch::cat(log_w, 0)).exp();  // [n, b]
      w = w / w.sum(0, /*keepdim=*/true);
      for (size_t j = j0; j < j1; ++j) {
        const int64_t jb = int64_t(j - j0);
        const auto& job = jobs[j];
        const int64_t y0 = ay.starts[job.iy], x0 = ax.starts[job.ix];
        at::Tensor wj = w.select(1, jb).to(torch::kFloat);          // [n]
        const double ess = 1.0 / wj.to(torch::kDouble).pow(2).sum().item<double>();
        st.ess_min = std::min(st.ess_min, ess);
        ess_sum += ess;
        at::Tensor x = xs.select(1, jb).select(1, 0);                // [n, tz, ty, tx]
        TileSummary s = tile_summary(x.reshape({n, -1}), wj, opts, z, {tz, ty, tx});
        at::Tensor win = tile_window_3d(wz, wy[job.iy], wx[job.ix]);  // [tz, ty, tx]
        auto add = [&](size_t k, const at::Tensor& v) {
          acc[k].slice(1, y0, y0 + ty).slice(2, x0, x0 + tx) += v.view({tz, ty, tx}) * win;
        };
        add(kMean, s.mean);
        add(kVar, s.var);
        add(kMeanSq, s.mean * s.mean);
        if (quantile) {
          add(kLower, s.lower);
          add(kUpper, s.upper);
        }
        for (size_t k = 0; k < n_save; ++k) add(kFirstSample + k, x[int64_t(k)]);
        if (yc >= y0 && yc < y0 + ty) {
          at::Tensor wzx = wz.view({-1, 1}) * wx[job.ix].view({1, -1}) *
                           wy[job.iy][yc - y0].item<float>();  // [tz, tx]
          for (int64_t k = 0; k < n_xz; ++k) {
            xz[size_t(k)].slice(0, z0, z0 + tz).slice(1, x0, x0 + tx) +=
                x[k].select(1, yc - y0) * wzx;
          }
        }
      }
      done += b;
      st.tiles += b;
      bar.update(done);
    }
  }
  flush_to(az.dim);
  bar.finish();
  st.ess_mean = st.tiles > 0 ? ess_sum / double(st.tiles) : 0;
  st.acceptance = acc_count > 0 ? acc_sum / double(acc_count) : -1;
  at::Tensor den_xz = sz.view({-1, 1}) * sx.view({1, -1}) * sy[yc].item<float>();  // [Z', X']
  for (auto& p : xz) {
    at::Tensor plane = (p / den_xz).slice(0, 0, az.dim).slice(1, 0, ax.dim).contiguous();
    plane.slice(0, 0, zb).zero_();  // outside the slab: not drawn here
    plane.slice(0, ze, az.dim).zero_();
    st.xz.push_back(plane);
  }
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return st;
}

SampleStats sample_stats_merge(const std::vector<SampleStats>& per_rank) {
  if (per_rank.empty()) throw ValueError("sample statistics: no rank to merge");
  if (per_rank.size() == 1) return per_rank[0];
  SampleStats m;
  m.draws = per_rank[0].draws;
  double ess_sum = 0, acc_sum = 0, acc_tiles = 0;
  bool first = true;
  for (const SampleStats& r : per_rank) {
    m.seconds = std::max(m.seconds, r.seconds);
    if (r.tiles <= 0) continue;  // an empty slab drew nothing
    m.tiles += r.tiles;
    m.ess_min = first ? r.ess_min : std::min(m.ess_min, r.ess_min);
    first = false;
    ess_sum += double(r.tiles) * r.ess_mean;
    if (r.acceptance >= 0) {
      acc_sum += double(r.tiles) * r.acceptance;
      acc_tiles += double(r.tiles);
    }
  }
  m.ess_mean = m.tiles > 0 ? ess_sum / double(m.tiles) : 0;
  m.acceptance = acc_tiles > 0 ? acc_sum / acc_tiles : -1;
  for (size_t k = 0; k < per_rank[0].xz.size(); ++k) {
    at::Tensor sum = torch::zeros(per_rank[0].xz[k].sizes(), torch::kDouble);
    for (const SampleStats& r : per_rank) {
      if (k >= r.xz.size() || r.xz[k].sizes() != per_rank[0].xz[k].sizes()) {
        throw ShapeError("sample statistics: the ranks' XZ planes differ in count or shape");
      }
      sum += r.xz[k].to(torch::kDouble);
    }
    m.xz.push_back(sum.to(torch::kFloat));
  }
  return m;
}

std::vector<SampleStats> sample_stats_gather(const SampleStats& st, Distributed& dist) {
  if (dist.world_size() == 1) return {st};
  const int world = dist.world_size();
  const std::vector<double> all = dist.allgather({double(st.tiles), double(st.draws), st.ess_min,
                                                  st.ess_mean, st.acceptance, st.seconds});
  std::vector<SampleStats> out(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    const double* v = all.data() + 6 * r;
    SampleStats& s = out[size_t(r)];
    s.tiles = int64_t(v[0]);
    s.draws = int64_t(v[1]);
    s.ess_min = v[2];
    s.ess_mean = v[3];
    s.acceptance = v[4];
    s.seconds = v[5];
  }
  for (const at::Tensor& x : st.xz) {
    at::Tensor flat = x.to(torch::kDouble).contiguous().view({-1});
    const std::vector<double> every =
        dist.allgather(std::vector<double>(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel()));
    for (int r = 0; r < world; ++r) {
      out[size_t(r)].xz.push_back(
          torch::from_blob(const_cast<double*>(every.data()) + r * flat.numel(), x.sizes(), torch::kDouble)
              .to(torch::kFloat));
    }
  }
  return out;
}

SampleVolumes sample_volume(Method& method, const at::Tensor& vol, const SampleOptions& opts,
                            bool keep_samples, const ProgressFn& progress) {
  at::Tensor v = vol.to(torch::kFloat).contiguous();
  SampleVolumes out;
  out.mean = torch::empty_like(v);
  out.std = torch::empty_like(v);
  out.lower = torch::empty_like(v);
  out.upper = torch::empty_like(v);
  auto into = [](at::Tensor& dst) {
    return SlabSink([&dst](int64_t z0, const at::Tensor& slab) {
      dst.slice(0, z0, z0 + slab.size(0)).copy_(slab);
    });
  };
  SampleSinks sinks{into(out.mean), into(out.std), into(out.lower), into(out.upper), {}};
  if (keep_samples) {
    out.samples.resize(size_t(opts.posterior.n));
    for (auto& s : out.samples) {
      s = torch::empty_like(v);
      sinks.samples.push_back(into(s));
    }
  }
  TileReader rd = [&](int64_t z0, int64_t z1, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
    return v.slice(0, z0, z0 + (z1 - z0)).slice(1, y0, y1).slice(2, x0, x1);
  };
  out.stats = sample_stream(method, {v.size(0), v.size(1), v.size(2)}, {rd}, sinks, opts, progress);
  return out;
}

}  // namespace unwedge
