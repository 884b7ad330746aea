// The equivariant bootstrap of a point method (see bootstrap.h).
#include "unwedge/methods/bootstrap.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "unwedge/core/error.h"
#include "unwedge/methods/augment.h"
#include "unwedge/methods/unet_method.h"
#include "unwedge/methods/wedge_common.h"

namespace unwedge {

EquivariantBootstrap::EquivariantBootstrap(Method& point, double noise_shell, double min_fraction)
    : point_(point), noise_shell_(noise_shell), rotations_(WedgeRotations::cube, min_fraction) {
  if (!(noise_shell > 0 && noise_shell < 0.5)) {
    throw ValueError("bootstrap: noise_shell = " + std::to_string(noise_shell) +
                     " (need 0 < shell < 0.5 cycles/voxel)");
  }
}

std::pair<CubeRotation, torch::Tensor> EquivariantBootstrap::draw_rotation_noise(
    std::array<int64_t, 3> shape, const WedgeGeometry& g, const torch::Tensor& m,
    const torch::Tensor& sigma2, uint64_t seed) {
  const auto& choices = rotations_.cube_choices(shape, g);
  if (choices.empty()) {
    throw ValueError("bootstrap: no cube rotation of a " + std::to_string(shape[0]) + "x" +
                     std::to_string(shape[1]) + "x" + std::to_string(shape[2]) +
                     " tile moves the missing wedge of " + std::to_string(g.tilt_min_deg) + ".." +
                     std::to_string(g.tilt_max_deg) + " deg; use cubic tiles (--tile, --tile-z)");
  }
  auto gen = at::detail::createCPUGenerator(seed);
  const int64_t pick = torch::randint(int64_t(choices.size()), {1}, gen, torch::kLong).item<int64_t>();
  // White noise with sigma2 per voxel has sigma2 per coefficient (orthonormal FFT); T_M keeps it
  // on the measured band, where the data's noise lives.
  auto xi = torch::randn({1, 1, shape[0], shape[1], shape[2]}, gen, torch::kFloat)
                .to(m.device());
  const int64_t b = sigma2.size(0);
  auto n = wedge_apply(xi.expand({b, 1, shape[0], shape[1], shape[2]}), m) *
           sigma2.to(m.device(), torch::kFloat).sqrt().view({b, 1, 1, 1, 1});
  return {choices[size_t(pick)], n};
}

PosteriorDraws EquivariantBootstrap::draw(const torch::Tensor& sub, const MethodWedge& wedge,
                                          const PosteriorOptions& opts) {
  method_check_batch_tensor("bootstrap", "draw input", sub);
  if (opts.n < 1) throw ValueError("bootstrap: n = " + std::to_string(opts.n) + " (need >= 1)");
  torch::NoGradGuard no_grad;
  const std::array<int64_t, 3> shape{sub.size(2), sub.size(3), sub.size(4)};
  const WedgeGeometry g = method_wedge_geometry(wedge);
  auto m = masks_.mask(shape, g, sub.device()).view({1, 1, shape[0], shape[1], shape[2] / 2 + 1});
  auto sigma2 = posterior_noise_variance_highfreq(sub, m, noise_shell_, "bootstrap");  // [B]
  // x̂ as `unwedge restore` gives it by default: the average of G over the wedge-keeping flips.
  torch::Tensor x_hat;  // [B,1,Z,Y,X]
  for (const auto& dims : wedge_keeping_flips()) {
    auto r = flip_dims(point_.restore(flip_dims(sub, dims)), dims).to(torch::kFloat);
    x_hat = x_hat.defined() ? x_hat + r : r;
  }
  x_hat = x_hat / double(wedge_keeping_flips().size());
  std::vector<torch::Tensor> draws;
  draws.reserve(size_t(opts.n));
  for (int64_t k = 0; k < opts.n; ++k) {
    auto [r, noise] = draw_rotation_noise(shape, g, m, sigma2, opts.seed + uint64_t(k));
    auto y_k = wedge_apply(cube_rotate(x_hat, r), m) + noise;  // T_M(R x̂) + n
    draws.push_back(cube_rotate(point_.restore(y_k.to(sub.scalar_type())), cube_inverse(r)));
  }
  // Centred on the point estimate: the draws' spread is the bootstrap's, their mean is x̂ (the
  // mean of the raw draws restores re-wedged restorations, which lost part of x̂: on seed 7 it
  // fell 0.15 CC below x̂, bench/RESULTS.md).
  auto raw = torch::stack(draws);  // [n, B, 1, Z, Y, X]
  PosteriorDraws d;
  d.samples = raw - raw.mean(0, /*keepdim=*/true) + x_hat.to(raw.scalar_type()).unsqueeze(0);
  d.log_weights = torch::full({opts.n, sub.size(0)}, -std::log(double(opts.n)),
                              d.samples.options());
  return d;
}

}  // namespace unwedge
