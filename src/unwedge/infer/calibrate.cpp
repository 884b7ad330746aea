#include "unwedge/infer/calibrate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "unwedge/core/device.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/eval/evaluate.h"
#include "unwedge/eval/metrics.h"
#include "unwedge/methods/augment.h"
#include "unwedge/methods/bootstrap.h"
#include "unwedge/methods/posterior.h"
#include "unwedge/ops/rotate.h"
#include "unwedge/ops/wedge.h"

namespace unwedge {

double conformal_bounds_scale(const at::Tensor& truth, const at::Tensor& mean,
                              const at::Tensor& lower, const at::Tensor& upper, double interval) {
  if (!(interval > 0 && interval < 1)) {
    throw ValueError("calibration: interval " + std::to_string(interval) + " (need 0 < interval < 1)");
  }
  if (truth.sizes() != mean.sizes() || lower.sizes() != mean.sizes() ||
      upper.sizes() != mean.sizes() || mean.numel() == 0) {
    throw ShapeError("calibration: truth, mean, lower and upper differ in shape or are empty");
  }
  const auto t = truth.to(torch::kDouble).reshape({-1}), m = mean.to(torch::kDouble).reshape({-1});
  const auto l = lower.to(torch::kDouble).reshape({-1}), u = upper.to(torch::kDouble).reshape({-1});
  const double inf = std::numeric_limits<double>::infinity();
  auto need_side = [&](const at::Tensor& dist, const at::Tensor& width) {
    // dist >= 0 from the mean, width >= 0 of the bound on that side
    return torch::where(dist <= 0, torch::zeros_like(dist),
                        torch::where(width > 0, dist / width.clamp_min(1e-300),
                                     torch::full_like(dist, inf)));
  };
  const auto above = t >= m;
  const auto need = torch::where(above, need_side(t - m, (u - m).clamp_min(0)),
                                 need_side(m - t, (m - l).clamp_min(0)));
  const int64_t v = need.numel();
  const int64_t k = std::min<int64_t>(v, int64_t(std::ceil(interval * double(v + 1))));
  return std::get<0>(need.sort()).index({k - 1}).item<double>();
}

namespace {

/// Fraction of voxels with ratio <= z (ratio = |truth − mean| / std, sorted ascending).
double fraction_within(const at::Tensor& sorted_ratio, double z) {
  const auto n = torch::searchsorted(sorted_ratio, torch::tensor({z}, torch::kDouble),
                                     /*out_int32=*/false, /*right=*/true);
  return n.item<double>() / double(sorted_ratio.numel());
}

/// |truth − mean| / std per voxel, sorted (0 where both are 0, +inf where only std is).
at::Tensor sorted_error_ratio(const at::Tensor& truth, const at::Tensor& mean, const at::Tensor& std) {
  if (truth.sizes() != mean.sizes() || std.sizes() != mean.sizes() || mean.numel() == 0) {
    throw ShapeError("calibration: truth, mean and std differ in shape or are empty");
  }
  const auto e = (truth.to(torch::kDouble) - mean.to(torch::kDouble)).abs().reshape({-1});
  const auto s = std.to(torch::kDouble).reshape({-1});
  const auto r = torch::where(e <= 0, torch::zeros_like(e),
                              torch::where(s > 0, e / s.clamp_min(1e-300),
                                           torch::full_like(e, std::numeric_limits<double>::infinity())));
  return std::get<0>(r.sort());
}

std::vector<double> gaussian_reliability(const at::Tensor& sorted_ratio, const std::vector<double>& levels,
                                         double scale) {
  std::vector<double> c;
  for (double p : levels) c.push_back(fraction_within(sorted_ratio, sample_interval_z(p) * scale));
  return c;
}

}  // namespace

double gaussian_reliability_scale(const at::Tensor& truth, const at::Tensor& mean,
                                  const at::Tensor& std, const std::vector<double>& levels) {
  if (levels.empty()) throw ValueError("calibration: no reliability levels");
  for (double p : levels) {
    if (!(p > 0 && p < 1)) throw ValueError("calibration: level " + std::to_string(p) + " (need 0 < p < 1)");
  }
  const at::Tensor r = sorted_error_ratio(truth, mean, std);
  const at::Tensor finite = r.masked_select(r.isfinite() & (r > 0));
  if (finite.numel() == 0) {
    throw ValueError("calibration: no voxel has a spread and an error (nothing to scale)");
  }
  // The factors that matter lie between the smallest and largest finite ratio over the levels' z.
  double z_lo = std::numeric_limits<double>::infinity(), z_hi = 0;
  for (double p : levels) {
    z_lo = std::min(z_lo, sample_interval_z(p));
    z_hi = std::max(z_hi, sample_interval_z(p));
  }
  const double lo = std::log(finite.min().item<double>() / z_hi);
  const double hi = std::log(finite.max().item<double>() / z_lo);
  double best_s = 1.0, best_gap = std::numeric_limits<double>::infinity();
  const int steps = 4000;
  for (int i = 0; i <= steps; ++i) {
    const double s = std::exp(lo + (hi - lo) * i / steps);
    const std::vector<double> c = gaussian_reliability(r, levels, s);
    double gap = 0;
    for (size_t k = 0; k < levels.size(); ++k) gap = std::max(gap, std::abs(c[k] - levels[k]));
    if (gap < best_gap) {
      best_gap = gap;
      best_s = s;
    }
  }
  return best_s;
}

std::vector<double> conformal_level_multipliers(const at::Tensor& truth, const at::Tensor& mean,
                                                const at::Tensor& std, const std::vector<double>& levels) {
  const at::Tensor r = sorted_error_ratio(truth, mean, std);
  const int64_t v = r.numel();
  std::vector<double> q;
  for (double p : levels) {
    if (!(p > 0 && p < 1)) throw ValueError("calibration: level " + std::to_string(p) + " (need 0 < p < 1)");
    const int64_t k = std::min<int64_t>(v, int64_t(std::ceil(p * double(v + 1))));
    q.push_back(r[k - 1].item<double>());
  }
  return q;
}

std::vector<std::array<int64_t, 3>> calibration_cube_corners(std::array<int64_t, 3> shape,
                                                             int64_t side, int64_t max_cubes) {
  if (side < 1 || max_cubes < 1 || shape[0] < side || shape[1] < side || shape[2] < side) {
    throw ValueError("calibration: " + std::to_string(max_cubes) + " cubes of edge " +
                     std::to_string(side) + " in a " + std::to_string(shape[0]) + "x" +
                     std::to_string(shape[1]) + "x" + std::to_string(shape[2]) + " volume");
  }
  // Per axis, the cubes that cover it; fewer along the axis with most until the grid fits.
  std::array<int64_t, 3> n{};
  for (int a = 0; a < 3; ++a) n[a] = (shape[a] + side - 1) / side;
  while (n[0] * n[1] * n[2] > max_cubes) {
    const int a = int(std::max_element(n.begin(), n.end()) - n.begin());
    --n[a];
  }
  auto corners_along = [&](int a) {
    std::vector<int64_t> c;
    if (n[a] == 1) return std::vector<int64_t>{(shape[a] - side) / 2};
    for (int64_t i = 0; i < n[a]; ++i) c.push_back(i * (shape[a] - side) / (n[a] - 1));
    return c;
  };
  std::vector<std::array<int64_t, 3>> out;
  for (int64_t z : corners_along(0)) {
    for (int64_t y : corners_along(1)) {
      for (int64_t x : corners_along(2)) out.push_back({z, y, x});
    }
  }
  return out;
}

namespace {

/// One cube's pseudo-problem, flattened: the known answer on the mean's scale, the draws'
/// mean, std, bounds, and per band (measured, wedge) the band-passed answer, mean and std.
struct PseudoProblem {
  at::Tensor truth, mean, std, lower, upper;
  std::array<at::Tensor, 2> band_truth, band_mean, band_std;
  std::string rotation;
  double noise_variance = 0;
};

/// `m`: the cubes' measured mask [1, 1, s, s, s/2+1]; `rotations_and_noise` keeps the
/// wedge-moving rotations of the cubes' shape, found once for every cube.
PseudoProblem pseudo_problem(Method& method, const at::Tensor& cube, const at::Tensor& other_half,
                             const SampleOptions& so, const WedgeGeometry& g, const at::Tensor& m,
                             EquivariantBootstrap& rotations_and_noise, uint64_t seed) {
  const int64_t s = cube.size(0);
  const std::array<int64_t, 3> shape{s, s, s};
  const torch::Device device = m.device();
  // The known answer: the restoration turned so that its invented wedge lies where data are,
  // observed again with the wedge and noise of the data's level and band, drawn as the
  // equivariant bootstrap draws its rotations and noise (methods/bootstrap.h).
  auto y = cube.to(device, torch::kFloat).view({1, 1, s, s, s});
  auto x_hat = method.restore(y).to(torch::kFloat);
  auto sigma2 = posterior_noise_variance_highfreq(y, m, 0.3, "calibration");  // [1]
  const auto [r, noise] = rotations_and_noise.draw_rotation_noise(shape, g, m, sigma2, seed);
  auto truth = cube_rotate(x_hat, r);  // [1, 1, s, s, s]
  const bool from_halves = other_half.defined();
  at::Tensor other;
  if (from_halves) other = other_half.to(device, torch::kFloat).view({1, 1, s, s, s});
  // With both halves, the noise is the data's own: (even − odd)/√2 has one half's noise level
  // and its colour (a weighted back-projection's noise rises with frequency, so white noise at
  // the high-frequency level overstates it at low frequencies), on the measured band.
  auto y_pseudo =
      wedge_apply(truth, m) + (from_halves ? wedge_apply((y - other) / std::sqrt(2.0), m) : noise);
  const SampleVolumes pv = sample_volume(method, y_pseudo.view({s, s, s}).to(torch::kCPU), so,
                                         /*keep_samples=*/true);
  // The known answer on the mean's scale, the convention every eval metric uses (eval/metrics.h
  // metric_bounds_coverage): a restoration's units are its own, so the truth is mapped onto them
  // by the least-squares fit mean ≈ a·truth + b.
  const at::Tensor raw = truth.view({s, s, s}).to(torch::kCPU, torch::kDouble);
  const AffineFit fit = affine_fit(raw.to(torch::kFloat), pv.mean);
  const at::Tensor tr = (raw * fit.scale + fit.offset).to(torch::kFloat);
  PseudoProblem p;
  p.truth = tr.reshape({-1});
  p.mean = pv.mean.reshape({-1});
  p.std = pv.std.reshape({-1});
  p.lower = pv.lower.reshape({-1});
  p.upper = pv.upper.reshape({-1});
  const std::array<const char*, 2> bands{"measured_band", "wedge_band"};
  for (size_t b = 0; b < bands.size(); ++b) {
    const BandPosterior bp = posterior_band(pv.mean, pv.samples, g, bands[b], so.std_pool,
                                            so.std_structure);
    p.band_truth[b] = band_pass(tr, g, bands[b]).reshape({-1});
    p.band_mean[b] = bp.mean.reshape({-1});
    p.band_std[b] = bp.std.reshape({-1});
  }
  p.rotation = r.name();
  p.noise_variance = sigma2.item<double>();
  return p;
}

}  // namespace

SpreadCalibration calibrate_spread(Method& method, const std::vector<at::Tensor>& cubes,
                                   const SampleOptions& opts,
                                   const std::vector<at::Tensor>& other_halves) {
  const auto t0 = std::chrono::steady_clock::now();
  if (cubes.empty()) throw ValueError("calibration: no cube");
  if (!other_halves.empty() && other_halves.size() != cubes.size()) {
    throw ShapeError("calibration: " + std::to_string(other_halves.size()) +
                     " cubes of the other half for " + std::to_string(cubes.size()));
  }
  for (size_t k = 0; k < cubes.size(); ++k) {
    const at::Tensor& cube = cubes[k];
    if (cube.dim() != 3 || cube.size(0) != cube.size(1) || cube.size(0) != cube.size(2) ||
        cube.size(0) < 8) {
      throw ValueError("calibration: the cube must be [s, s, s] with s >= 8, got " +
                       c10::str(cube.sizes()));
    }
    if (cube.size(0) != cubes[0].size(0)) {
      throw ShapeError("calibration: cubes of edges " + std::to_string(cubes[0].size(0)) +
                       " and " + std::to_string(cube.size(0)));
    }
    if (!other_halves.empty() && other_halves[k].sizes() != cube.sizes()) {
      throw ShapeError("calibration: the other half's cube is " +
                       c10::str(other_halves[k].sizes()) + ", the cube " + c10::str(cube.sizes()));
    }
  }
  torch::NoGradGuard no_grad;
  const torch::Device device = device_parse(opts.tiling.device);
  method.train(false);
  method.to(device);
  const WedgeGeometry g = method_wedge_geometry(opts.wedge);
  const int64_t side = cubes[0].size(0);
  WedgeMaskCache masks;
  const at::Tensor m =
      masks.mask({side, side, side}, g, device).view({1, 1, side, side, side / 2 + 1});
  EquivariantBootstrap rotations_and_noise(method);
  SampleOptions so = opts;
  so.std_scale = 1.0;
  so.bounds_scale = 1.0;
  so.tiling.z_begin = 0;
  so.tiling.z_end = -1;
  so.xz_planes = 0;

  // Every cube's pseudo-problem (its own rotation and noise), pooled voxel by voxel.
  std::vector<PseudoProblem> probs;
  SpreadCalibration c;
  c.side = side;
  c.cubes = int64_t(cubes.size());
  for (size_t k = 0; k < cubes.size(); ++k) {
    const uint64_t seed = (opts.posterior.seed ^ 0x5eed'ca1bULL) + uint64_t(k);
    const at::Tensor other = other_halves.empty() ? at::Tensor() : other_halves[k];
    probs.push_back(pseudo_problem(method, cubes[k], other, so, g, m, rotations_and_noise, seed));
    c.rotation += (k ? ", " : "") + probs.back().rotation;
    c.noise_variance += probs.back().noise_variance / double(cubes.size());
  }
  auto pooled = [&](auto field) {
    std::vector<at::Tensor> parts;
    for (const auto& p : probs) parts.push_back(field(p));
    return torch::cat(parts);
  };
  const at::Tensor tr = pooled([](const PseudoProblem& p) { return p.truth; });
  const at::Tensor mean = pooled([](const PseudoProblem& p) { return p.mean; });
  const at::Tensor sd = pooled([](const PseudoProblem& p) { return p.std; });
  const at::Tensor lower = pooled([](const PseudoProblem& p) { return p.lower; });
  const at::Tensor upper = pooled([](const PseudoProblem& p) { return p.upper; });

  c.noise = other_halves.empty() ? "highfreq" : "halves";
  c.bounds_scale = conformal_bounds_scale(tr, mean, lower, upper, opts.interval);
  if (!std::isfinite(c.bounds_scale) || !(c.bounds_scale > 0)) {
    throw ValueError("calibration: the pseudo-problem's bounds need a spread factor of " +
                     std::to_string(c.bounds_scale) + " (the draws do not vary where the answer " +
                     "differs from their mean); sample without --calibrate");
  }
  c.levels = {0.5, 0.8, 0.9, 0.95};
  c.std_scale = gaussian_reliability_scale(tr, mean, sd, c.levels);
  const at::Tensor ratio = sorted_error_ratio(tr, mean, sd);
  c.reliability_before = gaussian_reliability(ratio, c.levels, 1.0);
  c.reliability_after = gaussian_reliability(ratio, c.levels, c.std_scale);
  // Multipliers of the scaled std (the Gaussian z where no finite one covers the level).
  auto stated = [&](const at::Tensor& t, const at::Tensor& m, const at::Tensor& s) {
    std::vector<double> z = conformal_level_multipliers(t, m, s, c.levels);
    for (size_t k = 0; k < z.size(); ++k) {
      z[k] /= c.std_scale;
      if (!std::isfinite(z[k]) || !(z[k] > 0)) z[k] = sample_interval_z(c.levels[k]);
    }
    return z;
  };
  c.level_z = stated(tr, mean, sd);
  // The same per band, for the band-passed volumes (as eval_add_band_uncertainty scores them).
  for (size_t b = 0; b < 2; ++b) {
    *(b == 0 ? &c.level_z_measured : &c.level_z_wedge) =
        stated(pooled([b](const PseudoProblem& p) { return p.band_truth[b]; }),
               pooled([b](const PseudoProblem& p) { return p.band_mean[b]; }),
               pooled([b](const PseudoProblem& p) { return p.band_std[b]; }));
  }
  auto inside = [&](double f) {
    auto lo = mean - f * (mean - lower), hi = mean + f * (upper - mean);
    return ((tr >= lo) & (tr <= hi)).to(torch::kDouble).mean().item<double>();
  };
  c.coverage_before = inside(1.0);
  c.coverage_after = inside(c.bounds_scale);
  auto err = (mean - tr).abs().to(torch::kDouble);
  c.std_error_cc = torch::stack({err, sd.to(torch::kDouble)}).corrcoef()[0][1].item<double>();
  c.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (c.std_scale > 100) {
    log_warn("calibration: the draws' spread is {:.3g}x too small for their errors on the "
             "pseudo-problem: the posterior has collapsed (its draws barely differ), so its std "
             "ranks voxels at best and the calibrated intervals are mostly the calibration's; "
             "a cryowgen-mc fine-tuned with --init-from needs about 100 steps before its draws "
             "separate (train.jsonl: diversity near 0.001 until then): train it longer "
             "(docs/posterior.md)",
             c.std_scale);
  }
  log_info("calibration on {} cube{} of {}^3: {:.0f} % bounds covered {:.3f} of "
           "the known answer, x {:.3f} covers {:.3f}; std x {:.3f}: mean ± z std covers "
           "{:.3f}/{:.3f}/{:.3f}/{:.3f} at 50/80/90/95 %; calibrated intervals mean ± "
           "{:.2f}/{:.2f}/{:.2f}/{:.2f} std ({:.1f} s)",
           c.cubes, c.cubes == 1 ? "" : "s", c.side, 100 * opts.interval, c.coverage_before,
           c.bounds_scale, c.coverage_after, c.std_scale, c.reliability_after[0], c.reliability_after[1],
           c.reliability_after[2], c.reliability_after[3], c.level_z[0], c.level_z[1],
           c.level_z[2], c.level_z[3], c.seconds);
  return c;
}

SpreadCalibration calibrate_spread(Method& method, const at::Tensor& cube, const SampleOptions& opts,
                                   const at::Tensor& other_half) {
  return calibrate_spread(method, std::vector<at::Tensor>{cube}, opts,
                          other_half.defined() ? std::vector<at::Tensor>{other_half}
                                               : std::vector<at::Tensor>{});
}

nlohmann::json spread_calibration_json(const SpreadCalibration& c, double interval) {
  return {{"procedure",
           "T_M o R proxy: a cube of the input restored, turned by a wedge-moving cube rotation, "
           "wedged and noised at the data's level, sampled; split-conformal factor on its bounds "
           "(bounds_scale), the factor on the std that puts its Gaussian intervals nearest the "
           "reliability diagram's diagonal at 50/80/90/95 % (std_scale), and per level the "
           "split-conformal multiplier of the scaled std (level_z: read mean +/- level_z std as "
           "that level's interval)"},
          {"level_z", {{"nominal", c.levels}, {"z", c.level_z}, {"z_measured_band", c.level_z_measured},
                       {"z_wedge_band", c.level_z_wedge}}},
          {"bounds_scale", c.bounds_scale},
          {"std_scale", c.std_scale},
          {"reliability",
           {{"nominal", c.levels}, {"before", c.reliability_before}, {"after", c.reliability_after}}},
          {"interval", interval},
          {"coverage_before", c.coverage_before},
          {"coverage_after", c.coverage_after},
          {"std_error_cc", std::isfinite(c.std_error_cc) ? nlohmann::json(c.std_error_cc)
                                                          : nlohmann::json(nullptr)},
          {"noise", c.noise},
          {"noise_variance", c.noise_variance},
          {"cube", c.side},
          {"cubes", c.cubes},
          {"rotation", c.rotation},
          {"seconds", c.seconds}};
}

}  // namespace unwedge
