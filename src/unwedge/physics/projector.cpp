// Tilt-series projector about Y, its exact adjoint and weighted back-projection.
// Each tilt is a sparse matrix on the (z, x) plane (Joseph's scheme: two linear-interpolation
// weights per ray step) shared by all Y rows; the back-projector multiplies by its transpose,
// so the pair is exactly adjoint.
#include "unwedge/physics/projector.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <torch/torch.h>

#include "unwedge/core/error.h"

namespace unwedge {

namespace {

constexpr int64_t kChunkNnz = int64_t(1) << 22;  // matrix entries built at once (~100 MB)

void check_angles(const std::vector<double>& angles, const char* what) {
  if (angles.empty()) throw ValueError(std::string(what) + ": no tilt angles");
  for (size_t i = 0; i < angles.size(); ++i) {
    if (!std::isfinite(angles[i]) || std::abs(angles[i]) > 90.0) {
      throw ValueError(std::string(what) + ": tilt angle " + std::to_string(i) + " = " +
                       std::to_string(angles[i]) + " degrees is outside [-90, 90]");
    }
  }
}

void check_plane(int64_t Z, int64_t X, const char* what) {
  if (Z < 2 || X < 2) {
    throw ShapeError(std::string(what) + ": thickness " + std::to_string(Z) + " and width " +
                     std::to_string(X) + " must both be >= 2 voxels");
  }
}

/// Entries of one tilt's projection matrix P [Xd, Z*X] (Joseph's scheme): rays are stepped one
/// voxel at a time along the axis they are closest to (z for |theta| <= 45°, x beyond), with 1D
/// linear interpolation across the other axis (zero outside) times the path length per step
/// (1/|cos| or 1/|sin|). Rows are detector pixels, columns z * X + x. Positions are computed in
/// float64 on the device of `o`; values are float32.
struct TiltEntries {
  at::Tensor row, col, val;  ///< [nnz] int64, int64, float32
};

TiltEntries tilt_entries(double theta, int64_t Xd, int64_t Z, int64_t X, const at::TensorOptions& o) {
  auto od = o.dtype(torch::kDouble);
  auto oi = o.dtype(torch::kLong);
  double c = std::cos(theta), sn = std::sin(theta);
  auto u = (torch::arange(Xd, od) - (Xd - 1) / 2.0).view({1, Xd});  // detector, centred
  const bool along_z = std::abs(c) >= std::abs(sn);
  const int64_t L = along_z ? Z : X;   // steps along the ray
  const int64_t N = along_z ? X : Z;   // interpolated axis
  const double weight = 1.0 / (along_z ? std::abs(c) : std::abs(sn));
  auto step = torch::arange(L, od).view({L, 1});                     // voxel index along the ray
  auto stepc = step - (L - 1) / 2.0;
  // Position (voxel index) on the interpolated axis for every (step, detector pixel): [L, Xd].
  auto pos = along_z ? (u - stepc * sn) / c + (X - 1) / 2.0 : (u - stepc * c) / sn + (Z - 1) / 2.0;
  auto i0 = torch::floor(pos);
  auto w1 = pos - i0;
  auto i0l = i0.to(torch::kLong);
  auto stepl = torch::arange(L, oi).view({L, 1}).expand({L, Xd});
  auto det = torch::arange(Xd, oi).view({1, Xd}).expand({L, Xd});
  std::vector<at::Tensor> rows, cols, vals;
  for (int k = 0; k < 2; ++k) {  // the two interpolation corners
    auto idx = i0l + k;
    auto w = k == 0 ? 1.0 - w1 : w1;
    auto keep = (idx >= 0) & (idx < N) & (w > 0);
    auto col = along_z ? stepl * X + idx : idx * X + stepl;
    rows.push_back(det.masked_select(keep));
    cols.push_back(col.masked_select(keep));
    vals.push_back((w * weight).masked_select(keep).to(torch::kFloat));
  }
  return {torch::cat(rows), torch::cat(cols), torch::cat(vals)};
}

/// Groups of consecutive tilts whose matrices together hold at most ~kChunkNnz entries.
std::vector<std::pair<int64_t, int64_t>> tilt_chunks(int64_t T, int64_t Xd, int64_t Z, int64_t X) {
  int64_t per_tilt = 2 * std::max(Z, X) * Xd;
  int64_t n = std::clamp<int64_t>(kChunkNnz / std::max<int64_t>(per_tilt, 1), 1, T);
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t t0 = 0; t0 < T; t0 += n) out.push_back({t0, std::min(n, T - t0)});
  return out;
}

/// The stacked projection matrix of tilts [t0, t0 + n) as a sparse COO tensor
/// [n * Xd, Z * X] (transposed: [Z * X, n * Xd]).
at::Tensor tilt_matrix(const std::vector<double>& angles_deg, int64_t t0, int64_t n, int64_t Xd,
                       int64_t Z, int64_t X, const at::TensorOptions& o, bool transposed) {
  std::vector<at::Tensor> rows, cols, vals;
  for (int64_t t = t0; t < t0 + n; ++t) {
    auto e = tilt_entries(angles_deg[t] * M_PI / 180.0, Xd, Z, X, o);
    rows.push_back(e.row + (t - t0) * Xd);
    cols.push_back(e.col);
    vals.push_back(e.val);
  }
  auto r = torch::cat(rows), c = torch::cat(cols);
  auto idx = transposed ? torch::stack({c, r}) : torch::stack({r, c});
  std::vector<int64_t> size = transposed ? std::vector<int64_t>{Z * X, n * Xd}
                                         : std::vector<int64_t>{n * Xd, Z * X};
  return at::_sparse_coo_tensor_unsafe(idx, torch::cat(vals), size, o.dtype(torch::kFloat));
}

}  // namespace

// Both operators act on the [Z * X] plane, identical for every Y row: project is one sparse
// matrix product P [T * Xd, Z * X] x V [Z * X, Y], backproject the same with P's transpose, so
// the pair is exactly adjoint (same entries) and every Y row shares one matrix.
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
  int64_t T = int64_t(angles_deg.size());
  auto o = volume.options().dtype(torch::kFloat);
  auto v = volume.to(torch::kFloat).permute({0, 2, 1}).reshape({Z * X, Y}).contiguous();
  auto series = torch::empty({T, Xd, Y}, o);  // [T, Xd, Y]; Y last while multiplying
  for (auto [t0, n] : tilt_chunks(T, Xd, Z, X)) {
    auto P = tilt_matrix(angles_deg, t0, n, Xd, Z, X, o, /*transposed=*/false);
    series.narrow(0, t0, n).view({n * Xd, Y}).copy_(torch::mm(P, v));
  }
  return series.permute({0, 2, 1}).contiguous();  // [T, Y, Xd]
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
  int64_t T = series.size(0), Y = series.size(1), Xd = series.size(2);
  int64_t Z = thickness, X = width > 0 ? width : Xd;
  check_plane(Z, X, "backproject");
  auto o = series.options().dtype(torch::kFloat);
  auto s = series.to(torch::kFloat).permute({0, 2, 1}).contiguous();  // [T, Xd, Y]
  auto out = torch::zeros({Z * X, Y}, o);
  for (auto [t0, n] : tilt_chunks(T, Xd, Z, X)) {
    auto Pt = tilt_matrix(angles_deg, t0, n, Xd, Z, X, o, /*transposed=*/true);
    out.add_(torch::mm(Pt, s.narrow(0, t0, n).reshape({n * Xd, Y})));
  }
  return out.view({Z, X, Y}).permute({0, 2, 1}).contiguous();  // [Z, Y, X]
}

WbpFilter wbp_filter_parse(const std::string& name, const std::string& what) {
  if (name == "ramp") return WbpFilter::ramp;
  if (name == "sirt-like") return WbpFilter::sirt_like;
  if (name == "none") return WbpFilter::none;
  throw ValueError(what + ": '" + name + "' is not ramp, sirt-like or none");
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
