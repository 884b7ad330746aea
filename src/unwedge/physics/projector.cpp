// Tilt-series projector about Y, its exact adjoint and weighted back-projection.
// Each tilt is one resampling of the (z, x) planes (all Y rows as channels) at the ray points
// of Joseph's scheme followed by a weighted sum along the ray; the back-projector is the
// transpose of that resampling (grid_sampler_2d_backward), so the pair is exactly adjoint.
#include "unwedge/physics/projector.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <torch/torch.h>

#include "unwedge/core/error.h"

namespace unwedge {

namespace {

constexpr int64_t kChunkElems = int64_t(1) << 25;  // resampled samples held at once (128 MB)

void check_angles(const std::vector<double>& angles, const char* what) {
  if (angles.empty()) throw ValueError(std::string(what) + ": no tilt angles");
  for (size_t i = 0; i < angles.size(); ++i) {
    if (!std::isfinite(angles[i]) || std::abs(angles[i]) > 90.0) {
      throw ValueError(std::string(what) + ": tilt angle " + std::to_string(i) + " = " +
                       std::to_string(angles[i]) + " degrees is outside [-90, 90]");
    }
  }
}

/// Sampling of one tilt (Joseph's scheme): rays are stepped one voxel at a time along the axis
/// they are closest to (z for |theta| <= 45°, x beyond), with 1D linear interpolation across
/// the other axis; `weight` is the path length per step (1/|cos| or 1/|sin|).
struct TiltGrid {
  at::Tensor grid;  ///< [1, L, Xd, 2] (x, z) normalised for grid_sample with align_corners
  double weight;
  int64_t L;
};

TiltGrid tilt_grid(double theta, int64_t Xd, int64_t Z, int64_t X, const at::TensorOptions& o) {
  double c = std::cos(theta), sn = std::sin(theta);
  auto u = (torch::arange(Xd, o) - (Xd - 1) / 2.0).view({1, Xd});  // detector, centred
  at::Tensor x, z;
  TiltGrid g;
  if (std::abs(c) >= std::abs(sn)) {  // step along z
    g.L = Z;
    z = (torch::arange(Z, o) - (Z - 1) / 2.0).view({Z, 1}).expand({Z, Xd});
    x = (u - z * sn) / c;
    g.weight = 1.0 / std::abs(c);
  } else {  // step along x
    g.L = X;
    x = (torch::arange(X, o) - (X - 1) / 2.0).view({X, 1}).expand({X, Xd});
    z = (u - x * c) / sn;
    g.weight = 1.0 / std::abs(sn);
  }
  g.grid = torch::stack({x / ((X - 1) / 2.0), z / ((Z - 1) / 2.0)}, -1).unsqueeze(0);
  return g;
}

int64_t y_chunk(int64_t Y, int64_t L, int64_t Xd, int64_t Z, int64_t X) {
  int64_t per_row = std::max(L * Xd, Z * X);
  return std::clamp<int64_t>(kChunkElems / std::max<int64_t>(per_row, 1), 1, Y);
}

void check_plane(int64_t Z, int64_t X, const char* what) {
  if (Z < 2 || X < 2) {
    throw ShapeError(std::string(what) + ": thickness " + std::to_string(Z) + " and width " +
                     std::to_string(X) + " must both be >= 2 voxels");
  }
}

}  // namespace

at::Tensor project(const at::Tensor& volume, const std::vector<double>& angles_deg,
                   int64_t det_width) {
  if (volume.dim() != 3) {
    throw ShapeError("project: volume must be [Z, Y, X], got " + std::to_string(volume.dim()) +
                     " dims");
  }
  check_angles(angles_deg, "project");
  int64_t Z = volume.size(0), Y = volume.size(1), X = volume.size(2);
  check_plane(Z, X, "project");
  int64_t Xd = det_width > 0 ? det_width : X;
  auto vol = volume.to(torch::kFloat).permute({1, 0, 2});  // [Y, Z, X]: rows as channels
  auto o = vol.options();
  auto series = torch::empty({int64_t(angles_deg.size()), Y, Xd}, o);  // [T, Y, Xd]
  for (size_t t = 0; t < angles_deg.size(); ++t) {
    double theta = angles_deg[t] * M_PI / 180.0;
    auto tg = tilt_grid(theta, Xd, Z, X, o);
    int64_t L = tg.L;
    int64_t yc = y_chunk(Y, L, Xd, Z, X);
    for (int64_t y0 = 0; y0 < Y; y0 += yc) {
      int64_t n = std::min(yc, Y - y0);
      auto in = vol.narrow(0, y0, n).unsqueeze(0).contiguous();  // [1, n, Z, X]
      auto smp = at::grid_sampler_2d(in, tg.grid, /*interpolation_mode=*/0, /*padding_mode=*/0,
                                     /*align_corners=*/true);    // [1, n, L, Xd]
      series[t].narrow(0, y0, n).copy_(smp.sum(2).squeeze(0) * tg.weight);  // [n, Xd]
    }
  }
  return series;
}

at::Tensor backproject(const at::Tensor& series, const std::vector<double>& angles_deg,
                       int64_t thickness, int64_t width) {
  if (series.dim() != 3) {
    throw ShapeError("backproject: series must be [n_tilts, Y, X], got " +
                     std::to_string(series.dim()) + " dims");
  }
  check_angles(angles_deg, "backproject");
  if (series.size(0) != int64_t(angles_deg.size())) {
    throw ShapeError("backproject: " + std::to_string(series.size(0)) + " projections but " +
                     std::to_string(angles_deg.size()) + " angles");
  }
  int64_t Y = series.size(1), Xd = series.size(2);
  int64_t Z = thickness, X = width > 0 ? width : Xd;
  check_plane(Z, X, "backproject");
  auto s = series.to(torch::kFloat);
  auto o = s.options();
  auto out = torch::zeros({Y, Z, X}, o);  // [Y, Z, X]
  for (size_t t = 0; t < angles_deg.size(); ++t) {
    double theta = angles_deg[t] * M_PI / 180.0;
    auto tg = tilt_grid(theta, Xd, Z, X, o);
    int64_t L = tg.L;
    int64_t yc = y_chunk(Y, L, Xd, Z, X);
    for (int64_t y0 = 0; y0 < Y; y0 += yc) {
      int64_t n = std::min(yc, Y - y0);
      // The transpose of "sample then sum along the ray": spread each detector value along
      // its ray, then the transpose of bilinear sampling.
      auto g = (s[t].narrow(0, y0, n) * tg.weight).view({1, n, 1, Xd}).expand({1, n, L, Xd}).contiguous();
      auto shape_only = torch::zeros({1}, o).expand({1, n, Z, X});
      auto grads = at::grid_sampler_2d_backward(g, shape_only, tg.grid, /*interpolation_mode=*/0,
                                                /*padding_mode=*/0, /*align_corners=*/true,
                                                {true, false});
      out.narrow(0, y0, n).add_(std::get<0>(grads).squeeze(0));  // [n, Z, X]
    }
  }
  return out.permute({1, 0, 2}).contiguous();  // [Z, Y, X]
}

at::Tensor wbp_filter_1d(int64_t det_width, const WbpOptions& opts, const at::TensorOptions& to) {
  if (det_width < 1) throw ValueError("wbp: detector width " + std::to_string(det_width) + " < 1");
  if (opts.filter == WbpFilter::sirt_like && opts.sirt_iterations < 1) {
    throw ValueError("wbp: sirt_iterations " + std::to_string(opts.sirt_iterations) + " < 1");
  }
  if (!(opts.lowpass >= 0.0)) {
    throw ValueError("wbp: lowpass " + std::to_string(opts.lowpass) + " cycles/pixel < 0");
  }
  int64_t n = 2 * det_width;
  auto od = torch::TensorOptions().dtype(torch::kDouble).device(to.device());
  auto k = torch::fft::rfftfreq(n, od);  // [n/2+1], cycles/pixel
  at::Tensor w;
  if (opts.filter == WbpFilter::none) {
    w = torch::ones_like(k);
  } else {
    // Kak-Slaney discrete ramp: h[0] = 1/4, h[odd m] = -1/(pi m)^2, on a circular grid of n.
    auto m = torch::arange(n, od);
    m = torch::where(m > n / 2, m - n, m);
    auto h = torch::where(torch::remainder(m, 2) == 1, -1.0 / (M_PI * M_PI * m * m),
                          torch::zeros_like(m));
    h.index_put_({0}, 0.25);
    w = torch::real(torch::fft::rfft(h));
    if (opts.filter == WbpFilter::sirt_like) {
      double a = 1.0 / n;  // the smallest non-zero frequency: factor 1 there
      auto damp = 1.0 - torch::pow(1.0 - a / k.clamp_min(a), opts.sirt_iterations);
      damp.index_put_({0}, 1.0);
      w = w * damp;
    }
  }
  if (opts.lowpass > 0.0) {
    auto ham = torch::where(k < opts.lowpass, 0.54 + 0.46 * torch::cos(M_PI * k / opts.lowpass),
                            torch::zeros_like(k));
    w = w * ham;
  }
  return w.to(to.dtype().isScalarType(torch::kDouble) ? torch::kDouble : torch::kFloat);
}

at::Tensor wbp(const at::Tensor& series, const std::vector<double>& angles_deg,
               int64_t thickness, const WbpOptions& opts, int64_t width) {
  if (series.dim() != 3) {
    throw ShapeError("wbp: series must be [n_tilts, Y, X], got " + std::to_string(series.dim()) +
                     " dims");
  }
  check_angles(angles_deg, "wbp");
  int64_t T = series.size(0), Xd = series.size(2);
  if (T != int64_t(angles_deg.size())) {
    throw ShapeError("wbp: " + std::to_string(T) + " projections but " +
                     std::to_string(angles_deg.size()) + " angles");
  }
  // Angular weight of each tilt (radians): half the distance between its neighbours in sorted
  // order; an end tilt gets the full distance to its one neighbour; a lone tilt gets pi.
  std::vector<size_t> order(T);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return angles_deg[a] < angles_deg[b]; });
  std::vector<double> dtheta(T, M_PI);
  for (int64_t i = 0; i < T && T > 1; ++i) {
    double lo = i > 0 ? angles_deg[order[i - 1]] : angles_deg[order[i]];
    double hi = i + 1 < T ? angles_deg[order[i + 1]] : angles_deg[order[i]];
    double span = (i > 0 && i + 1 < T) ? 0.5 * (hi - lo) : (hi - lo);
    dtheta[order[i]] = span * M_PI / 180.0;
  }
  auto s = series.to(torch::kFloat);
  auto filt = wbp_filter_1d(Xd, opts, s.options());                        // [Xd+1]
  auto wt = torch::tensor(dtheta, torch::kDouble).to(s.device(), torch::kFloat).view({T, 1, 1});
  auto F = torch::fft::rfft(s, 2 * Xd, -1);                                 // [T, Y, Xd+1]
  auto filtered = torch::fft::irfft(F * filt, 2 * Xd, -1).narrow(-1, 0, Xd);  // [T, Y, Xd]
  filtered = (filtered * wt).contiguous();
  return backproject(filtered, angles_deg, thickness, width);
}

}  // namespace unwedge
