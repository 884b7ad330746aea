// Sliced Wasserstein and Sinkhorn divergence (see ot.h).
#include "unwedge/methods/ot.h"

#include <cmath>
#include <utility>

#include "unwedge/core/error.h"

namespace unwedge {

namespace {

void check_cloud(const char* what, const torch::Tensor& t) {
  if (!t.defined() || t.dim() != 2 || t.size(0) < 1 || t.size(1) < 1) {
    throw ShapeError(std::string(what) + ": point clouds must be [N, D] with N, D >= 1, got " +
                     (t.defined() ? c10::str(t.sizes()) : std::string("undefined")));
  }
}

// Squared Euclidean cost [N, M].
torch::Tensor sq_cost(const torch::Tensor& a, const torch::Tensor& b) {
  auto aa = a.square().sum(1, /*keepdim=*/true);     // [N, 1]
  auto bb = b.square().sum(1, /*keepdim=*/true).t();  // [1, M]
  return (aa + bb - 2.0 * a.matmul(b.t())).clamp_min(0.0);
}

// Both clouds [N, D] projected on `projections` random unit directions and sorted: {[N, P], [N, P]}.
std::pair<torch::Tensor, torch::Tensor> sorted_projections(const torch::Tensor& a,
                                                           const torch::Tensor& b,
                                                           int64_t projections) {
  check_cloud("sliced Wasserstein", a);
  check_cloud("sliced Wasserstein", b);
  if (a.sizes() != b.sizes()) {
    throw ShapeError("sliced Wasserstein: clouds differ in shape: " + c10::str(a.sizes()) +
                     " vs " + c10::str(b.sizes()));
  }
  if (projections < 1) {
    throw ValueError("sliced Wasserstein: projections = " + std::to_string(projections) +
                     " (need >= 1)");
  }
  auto theta = torch::randn({a.size(1), projections}, a.options().requires_grad(false));
  theta = theta / theta.norm(2, 0, /*keepdim=*/true).clamp_min(1e-12);  // [D, P] unit columns
  return {std::get<0>(a.matmul(theta).sort(0)), std::get<0>(b.matmul(theta).sort(0))};
}

}  // namespace

torch::Tensor sliced_wasserstein2(const torch::Tensor& a, const torch::Tensor& b,
                                  int64_t projections) {
  auto [pa, pb] = sorted_projections(a, b, projections);
  return (pa - pb).square().mean();
}

torch::Tensor sliced_wasserstein2_normalised(const torch::Tensor& a, const torch::Tensor& b,
                                             int64_t projections) {
  auto [pa, pb] = sorted_projections(a, b, projections);
  auto var_b = pb.detach().var(0, /*unbiased=*/false).mean().clamp_min(1e-12);
  return (pa - pb).square().mean() / var_b;
}

torch::Tensor sinkhorn_ot(const torch::Tensor& a, const torch::Tensor& b, double epsilon,
                          int64_t iters) {
  check_cloud("Sinkhorn", a);
  check_cloud("Sinkhorn", b);
  if (a.size(1) != b.size(1)) {
    throw ShapeError("Sinkhorn: dimensions differ: " + c10::str(a.sizes()) + " vs " +
                     c10::str(b.sizes()));
  }
  if (!(epsilon > 0)) throw ValueError("Sinkhorn: epsilon = " + std::to_string(epsilon) + " (need > 0)");
  if (iters < 1) throw ValueError("Sinkhorn: iters = " + std::to_string(iters) + " (need >= 1)");
  const double log_a = -std::log(static_cast<double>(a.size(0)));
  const double log_b = -std::log(static_cast<double>(b.size(0)));
  torch::Tensor f, g;
  {
    torch::NoGradGuard no_grad;
    auto c = sq_cost(a, b) / epsilon;          // [N, M]
    f = torch::zeros({a.size(0)}, a.options());  // [N]
    g = torch::zeros({b.size(0)}, a.options());  // [M]
    for (int64_t it = 0; it < iters; ++it) {
      f = -epsilon * torch::logsumexp(log_b + g.unsqueeze(0) / epsilon - c, 1);
      g = -epsilon * torch::logsumexp(log_a + f.unsqueeze(1) / epsilon - c, 0);
    }
  }
  // Final iteration with gradients: the dual value's gradient at the fixed point.
  auto c = sq_cost(a, b) / epsilon;
  auto f1 = -epsilon * torch::logsumexp(log_b + g.unsqueeze(0) / epsilon - c, 1);  // [N]
  auto g1 = -epsilon * torch::logsumexp(log_a + f1.unsqueeze(1) / epsilon - c, 0);  // [M]
  return f1.mean() + g1.mean();
}

torch::Tensor sinkhorn_divergence(const torch::Tensor& a, const torch::Tensor& b, double epsilon,
                                  int64_t iters) {
  return sinkhorn_ot(a, b, epsilon, iters) - 0.5 * sinkhorn_ot(a, a, epsilon, iters) -
         0.5 * sinkhorn_ot(b, b, epsilon, iters);
}

}  // namespace unwedge
