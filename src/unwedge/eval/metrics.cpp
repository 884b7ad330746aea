#include "unwedge/eval/metrics.h"

#include <cmath>
#include <limits>
#include <string>

#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/ops/fourier.h"

namespace unwedge {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kNoPower = 1e-10;  // relative power below which a band counts as empty

std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

void check_same(const at::Tensor& a, const at::Tensor& b, const char* what) {
  if (!a.defined() || !b.defined() || a.dim() != 3 || a.sizes() != b.sizes()) {
    throw ShapeError(std::string(what) + ": volumes must be [Z, Y, X] of one shape, got " +
                     (a.defined() ? shape_str(a) : "none") + " and " +
                     (b.defined() ? shape_str(b) : "none"));
  }
}

// Binary mask as bool, or an undefined tensor meaning "everything".
at::Tensor inside(const at::Tensor& mask, const at::Tensor& like, const char* what) {
  if (!mask.defined()) return {};
  if (mask.sizes() != like.sizes()) {
    throw ShapeError(std::string(what) + ": mask shape " + shape_str(mask) +
                     " differs from the volume's " + shape_str(like));
  }
  at::Tensor m = mask.gt(0.5);
  if (m.sum().item<int64_t>() == 0) throw ValueError(std::string(what) + ": the mask is empty");
  return m;
}

at::Tensor select(const at::Tensor& x, const at::Tensor& m) {
  at::Tensor d = x.to(torch::kDouble);
  return m.defined() ? d.masked_select(m) : d.reshape({-1});
}

std::array<int64_t, 3> shape3(const at::Tensor& t) { return {t.size(0), t.size(1), t.size(2)}; }

// Frequencies of the rfft half-grid, cycles per voxel, float64, broadcastable.
FreqGrid rfft_grid(std::array<int64_t, 3> s) {
  return fourier_freq_rfft(s, torch::TensorOptions().dtype(torch::kDouble));
}

// Coefficients that take part in Fourier metrics: not DC, inside the Nyquist sphere, in `region`.
at::Tensor fourier_support(std::array<int64_t, 3> s, const at::Tensor& region) {
  at::Tensor r = rfft_radius(s);
  at::Tensor keep = r.gt(0).logical_and(r.le(0.5));
  if (region.defined()) {
    if (region.dim() != 3 || region.size(0) != r.size(0) || region.size(1) != r.size(1) ||
        region.size(2) != r.size(2)) {
      throw ShapeError("Fourier region shape " + shape_str(region) +
                       " is not the rfft half-grid " + shape_str(r));
    }
    keep = keep.logical_and(region.to(torch::kBool));
  }
  return keep;
}

at::Tensor rfft(const at::Tensor& x) { return fourier_rfft3(x.to(torch::kDouble)); }

// Gaussian taps as scipy.ndimage.gaussian_filter1d: radius int(truncate σ + 0.5), normalised.
at::Tensor gaussian_taps(double sigma, double truncate) {
  int64_t r = static_cast<int64_t>(truncate * sigma + 0.5);
  at::Tensor x = torch::arange(-r, r + 1, torch::kDouble);
  at::Tensor w = torch::exp(-0.5 * x * x / (sigma * sigma));
  return w / w.sum();
}

// Separable filter of v [Z, Y, X] by 1D taps along each axis, "valid" (no padding) or
// zero-padded to keep the shape.
at::Tensor separable_filter(const at::Tensor& v, const at::Tensor& taps, bool same) {
  int64_t k = taps.size(0);
  int64_t pad = same ? k / 2 : 0;
  at::Tensor out = v.unsqueeze(0).unsqueeze(0);  // [1, 1, Z, Y, X]
  at::Tensor t = taps.to(v.dtype());
  out = torch::conv3d(out, t.view({1, 1, k, 1, 1}), {}, 1, {pad, 0, 0});
  out = torch::conv3d(out, t.view({1, 1, 1, k, 1}), {}, 1, {0, pad, 0});
  out = torch::conv3d(out, t.view({1, 1, 1, 1, k}), {}, 1, {0, 0, pad});
  return out.squeeze(0).squeeze(0);
}

}  // namespace

AffineFit affine_fit(const at::Tensor& x, const at::Tensor& y, const at::Tensor& mask) {
  check_same(x, y, "affine fit");
  at::Tensor m = inside(mask, x, "affine fit");
  at::Tensor xs = select(x, m), ys = select(y, m);
  double mx = xs.mean().item<double>(), my = ys.mean().item<double>();
  at::Tensor dx = xs - mx;
  double vx = (dx * dx).sum().item<double>();
  double cxy = (dx * (ys - my)).sum().item<double>();
  AffineFit f;
  f.scale = vx > 0 ? cxy / vx : 0.0;
  f.offset = my - f.scale * mx;
  return f;
}

double metric_psnr(const at::Tensor& x, const at::Tensor& gt, const at::Tensor& mask) {
  check_same(x, gt, "PSNR");
  at::Tensor m = inside(mask, x, "PSNR");
  at::Tensor xs = select(x, m), gs = select(gt, m);
  double range = (gs.max() - gs.min()).item<double>();
  double mse = (xs - gs).pow(2).mean().item<double>();
  if (mse == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(range * range / mse);
}

double metric_pearson_cc(const at::Tensor& x, const at::Tensor& y, const at::Tensor& mask) {
  check_same(x, y, "CC");
  at::Tensor m = inside(mask, x, "CC");
  at::Tensor xs = select(x, m), ys = select(y, m);
  xs = xs - xs.mean();
  ys = ys - ys.mean();
  double den = std::sqrt((xs * xs).sum().item<double>() * (ys * ys).sum().item<double>());
  return den > 0 ? (xs * ys).sum().item<double>() / den : kNaN;
}

double metric_spearman_cc(const at::Tensor& x, const at::Tensor& y, const at::Tensor& mask) {
  check_same(x, y, "Spearman CC");
  at::Tensor m = inside(mask, x, "Spearman CC");
  auto rank = [](const at::Tensor& v) {
    return v.argsort().argsort().to(torch::kDouble);  // 0 .. n-1, ties by position
  };
  at::Tensor xs = select(x, m), ys = select(y, m);
  // A constant input has no order: NaN, as the Pearson CC of a constant.
  if ((xs.max() - xs.min()).item<double>() == 0 || (ys.max() - ys.min()).item<double>() == 0) {
    return kNaN;
  }
  return metric_pearson_cc(rank(xs).view({1, 1, -1}), rank(ys).view({1, 1, -1}));
}

Sparsification metric_sparsification(const at::Tensor& uncertainty, const at::Tensor& abs_error,
                                     const std::vector<double>& fractions,
                                     const at::Tensor& mask) {
  check_same(uncertainty, abs_error, "sparsification");
  at::Tensor m = inside(mask, abs_error, "sparsification");
  at::Tensor u = select(uncertainty, m), e2 = select(abs_error, m).pow(2);
  const int64_t n = e2.numel();
  if (n == 0) throw ValueError("sparsification: no voxels");
  // Squared errors in the order voxels are kept longest (smallest uncertainty / error first),
  // then prefix sums: keeping the first k gives RMSE sqrt(prefix[k] / k).
  at::Tensor by_u = e2.index_select(0, u.argsort()).cumsum(0);
  at::Tensor by_e = std::get<0>(e2.sort()).cumsum(0);
  Sparsification r;
  const double full = std::sqrt(by_e[n - 1].item<double>() / double(n));
  double gap = 0;
  for (double f : fractions) {
    if (!(f >= 0 && f < 1)) {
      throw ValueError("sparsification: fraction " + std::to_string(f) + " is not in [0, 1)");
    }
    const int64_t keep = std::max<int64_t>(1, n - std::llround(f * double(n)));
    const double a = std::sqrt(by_u[keep - 1].item<double>() / double(keep));
    const double b = std::sqrt(by_e[keep - 1].item<double>() / double(keep));
    r.fractions.push_back(f);
    r.rmse_by_uncertainty.push_back(a);
    r.rmse_oracle.push_back(b);
    gap += a - b;
  }
  r.ause = fractions.empty() || full == 0 ? 0.0 : gap / double(fractions.size()) / full;
  return r;
}

double metric_interval_coverage(const at::Tensor& mean, const at::Tensor& std,
                                const at::Tensor& gt, double z, const at::Tensor& mask) {
  check_same(mean, gt, "interval coverage");
  check_same(std, gt, "interval coverage");
  if (!(z > 0)) throw ValueError("interval coverage: z " + std::to_string(z) + " must be > 0");
  at::Tensor m = inside(mask, gt, "interval coverage");
  at::Tensor hit = (select(gt, m) - select(mean, m)).abs().le(z * select(std, m));
  return hit.to(torch::kDouble).mean().item<double>();
}

double metric_ssim(const at::Tensor& x, const at::Tensor& gt, const at::Tensor& mask,
                   const SsimOptions& o) {
  check_same(x, gt, "SSIM");
  at::Tensor m = inside(mask, x, "SSIM");
  at::Tensor taps;
  if (o.gaussian_weights) {
    if (!(o.sigma > 0)) throw ValueError("SSIM: sigma " + std::to_string(o.sigma) + " must be > 0");
    taps = gaussian_taps(o.sigma, /*truncate=*/3.5);
  } else {
    if (o.win_size < 1 || o.win_size % 2 == 0) {
      throw ValueError("SSIM: win_size " + std::to_string(o.win_size) + " must be odd");
    }
    taps = torch::full({o.win_size}, 1.0 / o.win_size, torch::kDouble);
  }
  int64_t k = taps.size(0);
  for (int64_t d = 0; d < 3; ++d) {
    if (x.size(d) < k) {
      throw ShapeError("SSIM: volume " + shape_str(x) + " is smaller than the " +
                       std::to_string(k) + "-voxel window");
    }
  }
  at::Tensor a = x.to(torch::kDouble), b = gt.to(torch::kDouble);
  double R = o.data_range > 0 ? o.data_range : (b.max() - b.min()).item<double>();
  double c1 = (o.k1 * R) * (o.k1 * R), c2 = (o.k2 * R) * (o.k2 * R);
  // "valid" filtering = skimage's full-size filtering followed by crop((win - 1) / 2).
  at::Tensor ua = separable_filter(a, taps, false), ub = separable_filter(b, taps, false);
  at::Tensor va = separable_filter(a * a, taps, false) - ua * ua;
  at::Tensor vb = separable_filter(b * b, taps, false) - ub * ub;
  at::Tensor vab = separable_filter(a * b, taps, false) - ua * ub;
  at::Tensor s = (2 * ua * ub + c1) * (2 * vab + c2) / ((ua * ua + ub * ub + c1) * (va + vb + c2));
  if (!m.defined()) return s.mean().item<double>();
  int64_t p = (k - 1) / 2;
  at::Tensor mc = m.slice(0, p, m.size(0) - p).slice(1, p, m.size(1) - p).slice(2, p, m.size(2) - p);
  if (mc.sum().item<int64_t>() == 0) {
    throw ValueError("SSIM: the mask holds no voxel at least " + std::to_string(p) +
                     " voxels from the border");
  }
  return s.masked_select(mc).mean().item<double>();
}

at::Tensor mask_soften(const at::Tensor& mask, double sigma) {
  at::Tensor m = mask.gt(0.5).to(torch::kDouble);
  if (sigma <= 0) return m;
  return separable_filter(m, gaussian_taps(sigma, /*truncate=*/3.0), true).clamp(0.0, 1.0);
}

at::Tensor gaussian_average(const at::Tensor& v, double sigma) {
  if (!(sigma >= 0) || !std::isfinite(sigma)) {
    throw ValueError("Gaussian average: sigma " + std::to_string(sigma) + " voxels (need a finite value >= 0)");
  }
  if (v.dim() != 3) throw ShapeError("Gaussian average: [Z, Y, X] expected, got " + c10::str(v.sizes()));
  if (sigma == 0) return v;
  const at::Tensor taps = gaussian_taps(sigma, /*truncate=*/3.0);
  return separable_filter(v, taps, true) / separable_filter(torch::ones_like(v), taps, true);
}

at::Tensor structure_power(const at::Tensor& x, double pool) {
  return gaussian_average((x - gaussian_average(x, kStructureLowpassSigma)).square(), pool);
}

at::Tensor fourier_prepare(const at::Tensor& x, const at::Tensor& mask,
                           const at::Tensor& soft_mask) {
  at::Tensor m = inside(mask, x, "Fourier metrics");
  at::Tensor d = x.to(torch::kDouble);
  d = d - select(d, m).mean();
  if (soft_mask.defined()) d = d * soft_mask.to(torch::kDouble);
  return d;
}

double metric_bounds_coverage(const at::Tensor& mean, const at::Tensor& lower,
                              const at::Tensor& upper, const at::Tensor& gt) {
  check_same(mean, gt, "bounds coverage");
  check_same(lower, gt, "bounds coverage");
  check_same(upper, gt, "bounds coverage");
  const AffineFit fit = affine_fit(gt, mean);
  const at::Tensor g = gt.to(torch::kDouble) * fit.scale + fit.offset;
  const at::Tensor in = (g >= lower.to(torch::kDouble)) & (g <= upper.to(torch::kDouble));
  return in.to(torch::kDouble).mean().item<double>();
}

at::Tensor rfft_radius(std::array<int64_t, 3> s) {
  FreqGrid g = rfft_grid(s);
  return torch::sqrt(g.kz * g.kz + g.ky * g.ky + g.kx * g.kx);  // [Z, Y, X/2+1]
}

at::Tensor rfft_weights(std::array<int64_t, 3> s) {
  const int64_t nh = s[2] / 2 + 1;
  return fourier_half_multiplicity(s[2], torch::kCPU).to(torch::kDouble).view({1, 1, nh})
      .expand({s[0], s[1], nh});
}

at::Tensor rfft_cone_mask(std::array<int64_t, 3> s, int axis, double half_angle_deg) {
  if (axis < 0 || axis > 2) throw ValueError("cone axis " + std::to_string(axis) + " not 0..2");
  FreqGrid g = rfft_grid(s);
  at::Tensor r = rfft_radius(s);
  at::Tensor along = (axis == 0 ? g.kz : axis == 1 ? g.ky : g.kx).abs().expand_as(r);
  double c = std::cos(half_angle_deg * M_PI / 180.0);
  return along.ge(c * r - 1e-12);  // DC: 0 >= 0
}

at::Tensor rfft_xz_plane_mask(std::array<int64_t, 3> s, double half_angle_deg) {
  FreqGrid g = rfft_grid(s);
  at::Tensor r = rfft_radius(s);
  double sn = std::sin(half_angle_deg * M_PI / 180.0);
  return g.ky.abs().expand_as(r).le(sn * r + 1e-12);
}

FscCurve fsc_curve(const at::Tensor& a, const at::Tensor& b, double voxel_size,
                   const at::Tensor& region) {
  check_same(a, b, "FSC");
  auto s = shape3(a);
  int64_t n = std::min({s[0], s[1], s[2]});
  int64_t nshell = n / 2 + 1;
  at::Tensor fa = rfft(a), fb = rfft(b);
  at::Tensor keep = fourier_support(s, region);
  at::Tensor w = rfft_weights(s).masked_select(keep);
  at::Tensor idx = torch::round(rfft_radius(s).masked_select(keep) * n).to(torch::kLong);
  idx = idx.clamp_max(nshell - 1);
  at::Tensor ca = fa.masked_select(keep), cb = fb.masked_select(keep);
  at::Tensor num = w * (torch::real(ca) * torch::real(cb) + torch::imag(ca) * torch::imag(cb));
  at::Tensor pa = w * (torch::real(ca).pow(2) + torch::imag(ca).pow(2));
  at::Tensor pb = w * (torch::real(cb).pow(2) + torch::imag(cb).pow(2));
  auto acc = [&](const at::Tensor& v) {
    return torch::zeros({nshell}, torch::kDouble).index_add_(0, idx, v);
  };
  at::Tensor sn = acc(num), sa = acc(pa), sb = acc(pb), cnt = acc(w);
  at::Tensor fsc = sn / torch::sqrt(sa * sb);  // NaN for 0/0
  FscCurve c;
  c.voxel_size = voxel_size;
  auto fsc_a = fsc.accessor<double, 1>();
  auto cnt_a = cnt.accessor<double, 1>();
  for (int64_t i = 1; i < nshell; ++i) {
    c.freq.push_back(static_cast<double>(i) / (n * voxel_size));
    c.fsc.push_back(fsc_a[i]);
    c.n.push_back(static_cast<int64_t>(cnt_a[i]));
  }
  return c;
}

FscCrossing fsc_crossing(const FscCurve& c, double threshold) {
  FscCrossing x;
  double prev_f = 0.0, prev_v = 1.0;  // FSC is 1 at DC by definition
  for (size_t i = 0; i < c.fsc.size(); ++i) {
    double v = c.fsc[i];
    if (std::isnan(v)) continue;
    if (v < threshold) {
      double t = (prev_v - threshold) / (prev_v - v);
      x.crossed = true;
      x.freq = prev_f + t * (c.freq[i] - prev_f);
      x.resolution = 1.0 / x.freq;
      return x;
    }
    prev_f = c.freq[i];
    prev_v = v;
  }
  x.freq = c.freq.empty() ? 0.0 : c.freq.back();
  x.resolution = x.freq > 0 ? 1.0 / x.freq : kNaN;
  return x;
}

double band_cc(const at::Tensor& a, const at::Tensor& b, const at::Tensor& band) {
  check_same(a, b, "band CC");
  auto s = shape3(a);
  at::Tensor keep = fourier_support(s, band);
  at::Tensor w = rfft_weights(s).masked_select(keep);
  at::Tensor ca = rfft(a).masked_select(keep), cb = rfft(b).masked_select(keep);
  double num = (w * (torch::real(ca) * torch::real(cb) + torch::imag(ca) * torch::imag(cb)))
                   .sum().item<double>();
  double pa = (w * ca.abs().pow(2)).sum().item<double>();
  double pb = (w * cb.abs().pow(2)).sum().item<double>();
  // A band holding less than kNoPower of a volume's power is empty up to rounding: undefined.
  double ta = a.to(torch::kDouble).pow(2).sum().item<double>();
  double tb = b.to(torch::kDouble).pow(2).sum().item<double>();
  if (!(pa > kNoPower * ta) || !(pb > kNoPower * tb)) return kNaN;
  return num / std::sqrt(pa * pb);
}

double band_mean_power(const at::Tensor& a, const at::Tensor& band) {
  auto s = shape3(a);
  at::Tensor keep = fourier_support(s, band);
  at::Tensor w = rfft_weights(s).masked_select(keep);
  double count = w.sum().item<double>();
  if (count == 0) return kNaN;
  return (w * rfft(a).masked_select(keep).abs().pow(2)).sum().item<double>() / count;
}

}  // namespace unwedge
