// Missing-wedge masks (rfft half-grid), deep-wedge bands, rotated masks and T_M.
#include "unwedge/ops/wedge.h"

#include <cmath>
#include <cstdio>

#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/ops/fourier.h"

namespace unwedge {

namespace {

constexpr double kAngleEps = 1e-9;  // degrees: frequencies exactly on a tilt limit are measured
constexpr double kZeroK = 1e-12;    // cycles/voxel: "exactly zero" after rotation

/// Folds atan2(kz, kx) (degrees) into (-90, 90].
at::Tensor fold_phi(const at::Tensor& kz, const at::Tensor& kx) {
  auto phi = torch::atan2(kz, kx) * (180.0 / M_PI);
  phi = torch::where(phi > 90.0 + kAngleEps, phi - 180.0, phi);
  phi = torch::where(phi <= -90.0 + kAngleEps, phi + 180.0, phi);
  return phi;
}

/// The range actually tested, after the sign flag.
std::pair<double, double> effective_range(const WedgeGeometry& g) {
  if (g.sign_flip) return {-g.tilt_max_deg, -g.tilt_min_deg};
  return {g.tilt_min_deg, g.tilt_max_deg};
}

/// Angular distance (degrees, >= 0) of line angle phi (folded) from the range [a, b], with
/// lines identified modulo 180°.
at::Tensor angular_distance(const at::Tensor& phi, double a, double b) {
  auto dist_one = [&](const at::Tensor& p) {
    return torch::clamp_min(a - p, 0.0) + torch::clamp_min(p - b, 0.0);
  };
  auto d = torch::minimum(dist_one(phi), dist_one(phi - 180.0));
  return torch::minimum(d, dist_one(phi + 180.0));
}

/// The same frequency axis with its Nyquist entry (|k| = 0.5, even n) negated: the stored
/// sample at Nyquist stands for both +0.5 and -0.5.
at::Tensor nyquist_alias(const at::Tensor& k) {
  return torch::where(torch::abs(torch::abs(k) - 0.5) < 1e-12, -k, k);
}
/// 0/1 (double) of "measured" for frequency components given as broadcastable tensors.
at::Tensor measured_one(const at::Tensor& kz, const at::Tensor& ky, const at::Tensor& kx,
                        const WedgeGeometry& g, double margin_deg, bool band) {
  auto [a, b] = effective_range(g);
  auto phi = fold_phi(kz, kx);
  auto dist = angular_distance(phi, a, b);
  auto kz0 = torch::abs(kz) < kZeroK;
  auto dc = kz0 & (torch::abs(kx) < kZeroK) & (torch::abs(ky) < kZeroK);
  at::Tensor out;
  if (!band) {
    out = (dist <= kAngleEps) | kz0;  // kz = 0 plane (and DC) always measured
  } else {
    out = (dist > margin_deg + kAngleEps) & kz0.logical_not();
  }
  if (g.nyquist_sphere) {
    auto r2 = kz * kz + ky * ky + kx * kx;
    auto inside = r2 <= 0.25 + 1e-12;
    out = band ? (out & inside) : ((out & inside) | dc);
  }
  return out.to(torch::kFloat);
}

/// measured_one, required of every aliased reading of Nyquist samples (kx = +-0.5, kz = +-0.5,
/// ky = +-0.5), so masks are Hermitian-consistent and mirror exactly under the sign flag.
at::Tensor measured_from_k(const at::Tensor& kz, const at::Tensor& ky, const at::Tensor& kx,
                           const WedgeGeometry& g, double margin_deg, bool band) {
  auto m = measured_one(kz, ky, kx, g, margin_deg, band);
  auto az = nyquist_alias(kz), ay = nyquist_alias(ky), ax = nyquist_alias(kx);
  for (int v = 1; v < 8; ++v) {
    m = m * measured_one(v & 4 ? az : kz, v & 2 ? ay : ky, v & 1 ? ax : kx, g, margin_deg, band);
  }
  return m;
}

}  // namespace

void wedge_check(const WedgeGeometry& g) {
  if (!std::isfinite(g.tilt_min_deg) || !std::isfinite(g.tilt_max_deg) ||
      g.tilt_min_deg < -90.0 || g.tilt_max_deg > 90.0 || g.tilt_min_deg > g.tilt_max_deg) {
    char range[80];
    std::snprintf(range, sizeof range, "[%g, %g]", g.tilt_min_deg, g.tilt_max_deg);
    throw ValueError(std::string("wedge: tilt range ") + range +
                     " degrees must satisfy -90 <= min <= max <= 90");
  }
}

at::Tensor wedge_phi_deg_rfft(std::array<int64_t, 3> shape, c10::Device device) {
  auto f = fourier_freq_rfft(shape, torch::TensorOptions().dtype(torch::kDouble).device(device));
  return fold_phi(f.kz, f.kx).expand({shape[0], shape[1], shape[2] / 2 + 1}).contiguous();
}

at::Tensor wedge_mask_rfft(std::array<int64_t, 3> shape, const WedgeGeometry& g,
                           c10::Device device) {
  wedge_check(g);
  auto f = fourier_freq_rfft(shape, torch::TensorOptions().dtype(torch::kDouble).device(device));
  auto m = measured_from_k(f.kz, f.ky, f.kx, g, 0.0, /*band=*/false);
  m = m.expand({shape[0], shape[1], shape[2] / 2 + 1});  // [Z, Y, X/2+1]
  return m.contiguous();
}

at::Tensor wedge_band_rfft(std::array<int64_t, 3> shape, const WedgeGeometry& g,
                           double margin_deg, c10::Device device) {
  wedge_check(g);
  if (!(margin_deg >= 0.0)) {
    throw ValueError("wedge band: margin " + std::to_string(margin_deg) +
                     " degrees must be >= 0");
  }
  auto f = fourier_freq_rfft(shape, torch::TensorOptions().dtype(torch::kDouble).device(device));
  auto m = measured_from_k(f.kz, f.ky, f.kx, g, margin_deg, /*band=*/true);
  m = m.expand({shape[0], shape[1], shape[2] / 2 + 1});
  return m.contiguous();
}

at::Tensor wedge_mask_rfft_rotated(std::array<int64_t, 3> shape, const WedgeGeometry& g,
                                   const at::Tensor& R) {
  wedge_check(g);
  bool single = R.dim() == 2;
  if (!((R.dim() == 2 || R.dim() == 3) && R.size(-1) == 3 && R.size(-2) == 3)) {
    throw ShapeError("wedge_mask_rfft_rotated: R must be [3,3] or [B,3,3], got " +
                     std::to_string(R.dim()) + " dims");
  }
  auto Rb = (single ? R.unsqueeze(0) : R).to(torch::kDouble);  // [B,3,3]
  auto f = fourier_freq_rfft(shape, Rb.options());
  int64_t Z = shape[0], Y = shape[1], Xh = shape[2] / 2 + 1;
  auto kx = f.kx.expand({Z, Y, Xh}), ky = f.ky.expand({Z, Y, Xh}), kz = f.kz.expand({Z, Y, Xh});
  auto ax = nyquist_alias(kx), ay = nyquist_alias(ky), az = nyquist_alias(kz);
  at::Tensor m;
  for (int v = 0; v < 8; ++v) {  // every aliased reading of Nyquist samples must be measured
    auto k = torch::stack({v & 1 ? ax : kx, v & 2 ? ay : ky, v & 4 ? az : kz}, -1)
                 .view({1, -1, 3});          // [1, N, 3] rows (x, y, z)
    auto src = torch::matmul(k, Rb);         // R^T k as rows: [B, N, 3]
    auto mv = measured_one(src.select(-1, 2), src.select(-1, 1), src.select(-1, 0), g, 0.0,
                           /*band=*/false);
    m = v == 0 ? mv : m * mv;
  }
  m = m.view({-1, Z, Y, Xh});
  m = m.contiguous();
  return single ? m.squeeze(0) : m;
}

at::Tensor wedge_apply(const at::Tensor& v, const at::Tensor& mask) {
  if (v.dim() < 3) {
    throw ShapeError("wedge_apply: volume has " + std::to_string(v.dim()) +
                     " dims, needs [..., Z, Y, X]");
  }
  int64_t Z = v.size(-3), Y = v.size(-2), X = v.size(-1);
  if (mask.dim() < 3 || mask.size(-3) != Z || mask.size(-2) != Y || mask.size(-1) != X / 2 + 1) {
    throw ShapeError("wedge_apply: mask's last dims must be [" + std::to_string(Z) + ", " +
                     std::to_string(Y) + ", " + std::to_string(X / 2 + 1) +
                     "] for a volume [.., " + std::to_string(Z) + ", " + std::to_string(Y) +
                     ", " + std::to_string(X) + "]");
  }
  auto F = fourier_rfft3(v);  // [..., Z, Y, X/2+1]
  F = F * mask.to(v.device(), F.is_complex() ? torch::kFloat : mask.scalar_type());
  auto out = fourier_irfft3(F, {Z, Y, X});
  return out.to(v.scalar_type());
}

at::Tensor WedgeMaskCache::mask(std::array<int64_t, 3> shape, const WedgeGeometry& g,
                                c10::Device device) {
  Key k{0, shape[0], shape[1], shape[2], g.tilt_min_deg, g.tilt_max_deg, g.sign_flip,
        g.nyquist_sphere, 0.0, static_cast<int>(device.type()), device.index()};
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(k);
  if (it != cache_.end()) return it->second;
  auto m = wedge_mask_rfft(shape, g, device);
  cache_.emplace(k, m);
  return m;
}

at::Tensor WedgeMaskCache::band(std::array<int64_t, 3> shape, const WedgeGeometry& g,
                                double margin_deg, c10::Device device) {
  Key k{1, shape[0], shape[1], shape[2], g.tilt_min_deg, g.tilt_max_deg, g.sign_flip,
        g.nyquist_sphere, margin_deg, static_cast<int>(device.type()), device.index()};
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(k);
  if (it != cache_.end()) return it->second;
  auto m = wedge_band_rfft(shape, g, margin_deg, device);
  cache_.emplace(k, m);
  return m;
}

size_t WedgeMaskCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cache_.size();
}

void WedgeMaskCache::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  cache_.clear();
}

}  // namespace unwedge
