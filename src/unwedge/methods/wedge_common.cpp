// Shared pieces of the missing-wedge methods (see wedge_common.h).
#include "unwedge/methods/wedge_common.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "unwedge/core/error.h"
#include "unwedge/methods/augment.h"
#include "unwedge/ops/rotate.h"

namespace unwedge {

namespace {

bool same_geometry(const WedgeGeometry& a, const WedgeGeometry& b) {
  return a.tilt_min_deg == b.tilt_min_deg && a.tilt_max_deg == b.tilt_max_deg &&
         a.sign_flip == b.sign_flip && a.nyquist_sphere == b.nyquist_sphere;
}

// Per-sample (1/N) Σ_full |w · spec|² -> [B].
torch::Tensor band_sq_per_sample(const torch::Tensor& spec, const torch::Tensor& weight,
                                 int64_t nx) {
  auto p = spec.abs().square();  // [B, C, Z, Y, X/2+1]
  if (weight.defined()) p = p * weight.to(p.dtype()).square();
  p = p * fourier_half_multiplicity(nx, spec.device()).to(p.dtype());
  const double n = static_cast<double>(spec.size(-3) * spec.size(-2) * nx);
  return p.flatten(1).sum(1) / (n * static_cast<double>(spec.size(1)));  // [B]
}

}  // namespace

std::vector<WedgeGeometry> wedge_batch_geometries(const Batch& batch, int64_t b) {
  if (batch.wedge.empty()) return std::vector<WedgeGeometry>(b, WedgeGeometry{});
  if (batch.wedge.size() == 1) {
    return std::vector<WedgeGeometry>(b, method_wedge_geometry(batch.wedge[0]));
  }
  if (static_cast<int64_t>(batch.wedge.size()) != b) {
    throw ShapeError("batch has " + std::to_string(batch.wedge.size()) +
                     " wedge geometries for " + std::to_string(b) + " samples (need 1 or B)");
  }
  std::vector<WedgeGeometry> out;
  for (const auto& w : batch.wedge) out.push_back(method_wedge_geometry(w));
  return out;
}

torch::Tensor wedge_batch_masks(std::array<int64_t, 3> shape,
                                const std::vector<WedgeGeometry>& geoms, WedgeMaskCache& cache,
                                torch::Device device) {
  std::vector<torch::Tensor> ms;
  for (const auto& g : geoms) ms.push_back(cache.mask(shape, g, device));
  return torch::stack(ms).unsqueeze(1);  // [B, 1, Z, Y, X/2+1]
}

torch::Tensor wedge_batch_masks_rotated(std::array<int64_t, 3> shape,
                                        const std::vector<WedgeGeometry>& geoms,
                                        const torch::Tensor& R) {
  if (R.dim() != 3 || R.size(0) != static_cast<int64_t>(geoms.size())) {
    throw ShapeError("rotated wedge masks: R must be [B,3,3] with B = " +
                     std::to_string(geoms.size()) + ", got " + c10::str(R.sizes()));
  }
  bool all_same = true;
  for (const auto& g : geoms) all_same = all_same && same_geometry(g, geoms[0]);
  if (all_same) return wedge_mask_rfft_rotated(shape, geoms[0], R).unsqueeze(1);
  std::vector<torch::Tensor> ms;
  for (size_t i = 0; i < geoms.size(); ++i) {
    ms.push_back(wedge_mask_rfft_rotated(shape, geoms[i], R[static_cast<int64_t>(i)]));
  }
  return torch::stack(ms).unsqueeze(1);  // [B, 1, Z, Y, X/2+1]
}

torch::Tensor fourier_band_mean_sq(const torch::Tensor& spec, const torch::Tensor& weight,
                                   int64_t nx) {
  return band_sq_per_sample(spec, weight, nx).mean();
}

DdwLossTerms ddw_loss(const torch::Tensor& pred, const torch::Tensor& target,
                      const torch::Tensor& m_rot, const torch::Tensor& m, double lambda) {
  if (pred.sizes() != target.sizes()) {
    throw ShapeError("ddw loss: prediction " + c10::str(pred.sizes()) + " and target " +
                     c10::str(target.sizes()) + " differ");
  }
  auto spec = fourier_rfft3(pred - target);  // [B, 1, Z, Y, X/2+1]
  const int64_t nx = pred.size(-1);
  DdwLossTerms t;
  t.both = fourier_band_mean_sq(spec, m_rot * m, nx);
  t.wedge = fourier_band_mean_sq(spec, m_rot * (1.0 - m), nx);
  t.total = t.both + lambda * t.wedge;
  return t;
}

torch::Tensor wedge_data_term(const torch::Tensor& x_hat, const torch::Tensor& y,
                              const torch::Tensor& m, const torch::Tensor& sigma2) {
  auto per = band_sq_per_sample(fourier_rfft3(x_hat - y), m, x_hat.size(-1));  // [B]
  if (sigma2.defined()) per = per / sigma2.to(per.dtype());
  return per.mean();
}

torch::Tensor noise_variance_from_halves(const torch::Tensor& even, const torch::Tensor& odd) {
  torch::NoGradGuard no_grad;
  return ((even - odd).flatten(1).var(1) / 2.0).clamp_min(1e-8);  // [B]
}

torch::Tensor center_crop3(const torch::Tensor& v, std::array<int64_t, 3> size) {
  auto out = v;
  for (int d = 0; d < 3; ++d) {
    const int64_t dim = v.dim() - 3 + d;
    const int64_t n = v.size(dim);
    if (size[d] > n) {
      throw ShapeError("centre crop to " + std::to_string(size[d]) + " of an axis of " +
                       std::to_string(n));
    }
    out = out.narrow(dim, (n - size[d]) / 2, size[d]);
  }
  return out;
}

int64_t wedge_rotated_edge(std::array<int64_t, 3> patch, bool crop, WedgeRotations set,
                           int64_t multiple, const std::string& method) {
  if (crop && set != WedgeRotations::cube) return rotation_crop_size(patch, multiple);
  if (patch[1] != patch[0] || patch[2] != patch[0]) {
    throw ShapeError("method " + method + ": rotations without a crop need cubic patches, got " +
                     c10::str(patch[0]) + "x" + c10::str(patch[1]) + "x" + c10::str(patch[2]));
  }
  return patch[0];
}

int64_t rotation_crop_size(std::array<int64_t, 3> patch, int64_t multiple) {
  const int64_t p = std::min({patch[0], patch[1], patch[2]});
  int64_t n = static_cast<int64_t>(std::floor(static_cast<double>(p) / std::sqrt(2.0)));
  n -= n % std::max<int64_t>(multiple, 1);
  if (n < multiple || n <= 0) {
    throw ShapeError("patch of " + std::to_string(p) + " voxels is too small to crop after " +
                     "rotation to a multiple of " + std::to_string(multiple) + " (need >= " +
                     std::to_string(static_cast<int64_t>(std::ceil(std::sqrt(2.0) * multiple))) +
                     "; train with --patch ceil(sqrt(2)*N))");
  }
  return n;
}

torch::Tensor wedge_random_rotations(int64_t n, torch::Device device) {
  return random_rotations(n, at::detail::getDefaultCPUGenerator(), torch::kCPU).to(device);
}

WedgeRotations wedge_rotations_parse(const std::string& s, const std::string& method) {
  if (s == "haar") return WedgeRotations::haar;
  if (s == "cube") return WedgeRotations::cube;
  if (s == "mix") return WedgeRotations::mix;
  throw ValueError("method " + method + ": rotations = '" + s + "' (haar | cube | mix)");
}

double wedge_moved_fraction(std::array<int64_t, 3> shape, const WedgeGeometry& g,
                            const torch::Tensor& R) {
  torch::NoGradGuard no_grad;
  auto m = wedge_mask_rfft(shape, g, torch::kCPU);                       // [Z, Y, X/2+1]
  auto mr = wedge_mask_rfft_rotated(shape, g, R.to(torch::kCPU)).squeeze(0);
  auto mult = fourier_half_multiplicity(shape[2], torch::kCPU);          // [X/2+1]
  const double missing = ((1.0 - m) * mult).sum().item<double>();
  if (missing <= 0) return 0.0;
  return ((1.0 - m) * mr * mult).sum().item<double>() / missing;
}

std::vector<CubeRotation> wedge_moving_cube_rotations(std::array<int64_t, 3> shape,
                                                      const WedgeGeometry& g,
                                                      double min_fraction) {
  std::vector<CubeRotation> out;
  for (const auto& r : cube_rotations_preserving(shape)) {
    if (wedge_moved_fraction({32, 32, 32}, g, r.matrix()) >= min_fraction) out.push_back(r);
  }
  return out;
}

WedgeRotationSampler::WedgeRotationSampler(WedgeRotations set, double min_fraction)
    : set_(set), min_fraction_(min_fraction) {
  if (!(min_fraction >= 0.0 && min_fraction <= 1.0)) {
    throw ValueError("wedge rotations: min_fraction = " + std::to_string(min_fraction) +
                     " (need 0..1)");
  }
}

const std::vector<CubeRotation>& WedgeRotationSampler::cube_choices(std::array<int64_t, 3> shape,
                                                                    const WedgeGeometry& g) {
  std::lock_guard<std::mutex> lock(mu_);
  char key[160];
  std::snprintf(key, sizeof key, "%lld,%lld,%lld|%.9g,%.9g,%d,%d", (long long)shape[0],
                (long long)shape[1], (long long)shape[2], g.tilt_min_deg, g.tilt_max_deg,
                int(g.sign_flip), int(g.nyquist_sphere));
  auto it = cache_.find(key);
  if (it == cache_.end()) {
    it = cache_.emplace(key, wedge_moving_cube_rotations(shape, g, min_fraction_)).first;
  }
  return it->second;
}

WedgeRotationDraw WedgeRotationSampler::draw(std::array<int64_t, 3> shape,
                                             const std::vector<WedgeGeometry>& geoms,
                                             torch::Device device) {
  const int64_t b = static_cast<int64_t>(geoms.size());
  WedgeRotationDraw d;
  d.R = random_rotations(b, at::detail::getDefaultCPUGenerator(), torch::kCPU);  // [B, 3, 3]
  d.cube.assign(static_cast<size_t>(b), std::nullopt);
  if (set_ != WedgeRotations::haar) {
    auto coin = torch::rand({b}, torch::kDouble);
    auto pick = torch::rand({b}, torch::kDouble);
    for (int64_t i = 0; i < b; ++i) {
      if (set_ == WedgeRotations::mix && coin[i].item<double>() < 0.5) continue;
      const auto& choices = cube_choices(shape, geoms[static_cast<size_t>(i)]);
      if (choices.empty()) continue;  // nothing moves this wedge: stay Haar
      auto k = std::min<int64_t>(int64_t(pick[i].item<double>() * double(choices.size())),
                                 int64_t(choices.size()) - 1);
      const CubeRotation& r = choices[static_cast<size_t>(k)];
      d.cube[static_cast<size_t>(i)] = r;
      d.R[i] = r.matrix().to(torch::kFloat);
    }
  }
  d.R = d.R.to(device);
  return d;
}

torch::Tensor wedge_rotate(const torch::Tensor& x, const WedgeRotationDraw& d, int64_t crop) {
  const int64_t b = x.size(0);
  std::vector<int64_t> haar;
  for (int64_t i = 0; i < b; ++i) {
    if (!d.cube[static_cast<size_t>(i)]) haar.push_back(i);
  }
  torch::Tensor out;
  if (static_cast<int64_t>(haar.size()) == b) {
    out = rotate_volume(x, d.R.to(x.device(), x.scalar_type()), /*order=*/1);
  } else {
    std::vector<torch::Tensor> parts(static_cast<size_t>(b));
    for (int64_t i = 0; i < b; ++i) {
      const auto& c = d.cube[static_cast<size_t>(i)];
      if (c) parts[static_cast<size_t>(i)] = cube_rotate(x[i], *c);
    }
    if (!haar.empty()) {
      auto idx = torch::tensor(haar, torch::kLong).to(x.device());
      auto rh = rotate_volume(x.index_select(0, idx),
                              d.R.index_select(0, idx).to(x.device(), x.scalar_type()), 1);
      for (size_t j = 0; j < haar.size(); ++j) parts[static_cast<size_t>(haar[j])] = rh[int64_t(j)];
    }
    out = torch::stack(parts);
  }
  if (crop > 0) out = center_crop3(out, {crop, crop, crop});
  return out;
}

std::pair<torch::Tensor, torch::Tensor> wedge_proxy_degrade(const torch::Tensor& x,
                                                            const torch::Tensor& R,
                                                            int64_t crop, const torch::Tensor& m) {
  auto rx = rotate_volume(x, R.to(x.device(), x.scalar_type()), /*order=*/1);  // [B, 1, P, P, P]
  if (crop > 0) rx = center_crop3(rx, {crop, crop, crop});                      // [B, 1, n, n, n]
  return {rx, wedge_apply(rx, m)};
}

torch::Tensor wedge_refill(const torch::Tensor& y, const torch::Tensor& f, const torch::Tensor& m) {
  auto s = m * fourier_rfft3(y) + (1.0 - m) * fourier_rfft3(f);
  return fourier_irfft3(s, {y.size(-3), y.size(-2), y.size(-1)});
}

torch::Tensor wedge_matched_noise(const torch::Tensor& shape_like, const torch::Tensor& m,
                                  const torch::Tensor& sigma2) {
  torch::NoGradGuard no_grad;
  auto xi = wedge_apply(torch::randn_like(shape_like), m);  // [B, 1, Z, Y, X]
  const int64_t nx = shape_like.size(-1);
  auto mult = fourier_half_multiplicity(nx, m.device());
  auto mm = m.expand({shape_like.size(0), 1, shape_like.size(-3), shape_like.size(-2), nx / 2 + 1});
  auto frac = (mm * mult).flatten(1).sum(1) /
              static_cast<double>(shape_like.size(-3) * shape_like.size(-2) * nx);  // [B]
  auto scale = (sigma2.to(xi.dtype()) / frac.clamp_min(1e-6)).sqrt();
  return xi * scale.view({-1, 1, 1, 1, 1});
}

void NetSnapshot::take(const UNet3d& net) {
  torch::NoGradGuard no_grad;
  auto params = net->parameters();
  torch::Device device = params.empty() ? torch::Device(torch::kCPU) : params[0].device();
  if (!copy_) {
    copy_ = UNet3d(net->options());
    copy_->to(device);
  }
  auto src = net->named_parameters(/*recurse=*/true);
  auto dst = copy_->named_parameters(/*recurse=*/true);
  for (const auto& p : src) dst[p.key()].copy_(p.value());
  auto bsrc = net->named_buffers(/*recurse=*/true);
  auto bdst = copy_->named_buffers(/*recurse=*/true);
  for (const auto& b : bsrc) bdst[b.key()].copy_(b.value());
  copy_->eval();
}

void NetSnapshot::refresh(const UNet3d& net, int64_t step, int64_t every) {
  const int64_t bucket = step / std::max<int64_t>(every, 1);
  if (bucket == bucket_ && ready()) return;
  take(net);
  bucket_ = bucket;
}

torch::Tensor NetSnapshot::run(const torch::Tensor& x) {
  if (!copy_) throw ValueError("network snapshot used before it was taken");
  torch::NoGradGuard no_grad;
  std::array<int64_t, 3> pad{};
  auto xp = unet3d_pad_to_multiple(x, unet3d_size_multiple(copy_->options()), &pad);
  return unet3d_crop(copy_->forward(xp), pad);
}

namespace {

// |k| in cycles/voxel on the rfft half-grid of a [Z, Y, X] volume [Z, Y, X/2+1].
torch::Tensor radius_rfft(std::array<int64_t, 3> shape, const torch::TensorOptions& opts) {
  auto g = fourier_freq_rfft(shape, opts);
  return (g.kz.square() + g.ky.square() + g.kx.square()).sqrt();
}

}  // namespace

torch::Tensor halves_fsc_sums(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& m) {
  if (a.sizes() != b.sizes() || a.dim() != 5) {
    throw ShapeError("half-map FSC: halves " + c10::str(a.sizes()) + " and " + c10::str(b.sizes()) +
                     " (need equal [B, 1, Z, Y, X])");
  }
  torch::NoGradGuard no_grad;
  const std::array<int64_t, 3> shape{a.size(2), a.size(3), a.size(4)};
  const int64_t p = std::min({shape[0], shape[1], shape[2]});
  const int64_t nshell = p / 2 + 1;
  auto fa = fourier_rfft3(a.to(torch::kDouble)), fb = fourier_rfft3(b.to(torch::kDouble));
  auto w = fourier_half_multiplicity(shape[2], a.device()).to(torch::kDouble) *
           m.to(torch::kDouble).expand_as(torch::real(fa));                    // [B, 1, Z, Y, X/2+1]
  auto r = radius_rfft(shape, torch::TensorOptions().dtype(torch::kDouble).device(a.device()));
  auto idx = torch::round(r * static_cast<double>(p)).to(torch::kLong);      // [Z, Y, X/2+1]
  w = w * (idx < nshell).to(torch::kDouble);
  idx = idx.clamp_max(nshell - 1).expand_as(w).reshape({-1});
  auto acc = [&](const torch::Tensor& v) {
    return torch::zeros({nshell}, v.options()).index_add_(0, idx, (w * v).reshape({-1}));
  };
  auto num = torch::real(fa) * torch::real(fb) + torch::imag(fa) * torch::imag(fb);
  return torch::stack({acc(num), acc(torch::abs(fa).square()), acc(torch::abs(fb).square())}).cpu();
}

double halves_fsc_crossing(const torch::Tensor& sums, int64_t p, double threshold, double none) {
  auto s = sums.to(torch::kDouble).contiguous();
  auto acc = s.accessor<double, 2>();
  const int64_t nshell = s.size(1);
  double prev_f = 0.0, prev_v = 1.0;
  for (int64_t i = 1; i < nshell; ++i) {
    const double den = std::sqrt(acc[1][i] * acc[2][i]);
    if (!(den > 0)) continue;
    const double v = acc[0][i] / den, f = static_cast<double>(i) / static_cast<double>(p);
    if (v < threshold) return prev_f + (prev_v - threshold) / (prev_v - v) * (f - prev_f);
    prev_f = f;
    prev_v = v;
  }
  return none;
}

torch::Tensor lowpass_cosine(const torch::Tensor& v, double cutoff, double width) {
  if (!(cutoff > 0) || !(width > 0)) {
    throw ValueError("low-pass: cutoff " + std::to_string(cutoff) + " and width " +
                     std::to_string(width) + " must be > 0");
  }
  const std::array<int64_t, 3> shape{v.size(-3), v.size(-2), v.size(-1)};
  auto r = radius_rfft(shape, torch::TensorOptions().dtype(v.dtype()).device(v.device()));
  auto t = ((r - (cutoff - width / 2)) / width).clamp(0.0, 1.0);               // 0 .. 1 across the edge
  auto h = torch::cos(t * (M_PI / 2)).square();
  return fourier_irfft3(fourier_rfft3(v) * h, shape);
}

}  // namespace unwedge
