// Optimal-transport discrepancies between two equal-weight point clouds (batches of feature
// vectors), differentiable in both: the sliced Wasserstein distance and the Sinkhorn divergence.
// Used by cryogen-ot (distribution matching of pseudo-observations and real observations) and by
// the posterior methods (entropic OT). Ground cost: squared Euclidean distance.
#pragma once
#include <cstdint>

#include <torch/torch.h>

namespace unwedge {

/// Squared sliced 2-Wasserstein distance between a [N, D] and b [N, D] (same N, equal weights):
/// mean over `projections` directions θ uniform on the unit sphere (torch's default generator
/// on a's device) of W2²(θ·a, θ·b), each the mean squared difference of the sorted projections.
/// For b = a + d: exactly E_θ[(θ·d)²] = |d|²/D in expectation over θ.
/// Throws ShapeError for mismatched shapes, ValueError for projections < 1.
torch::Tensor sliced_wasserstein2(const torch::Tensor& a, const torch::Tensor& b,
                                  int64_t projections);

/// The sliced 2-Wasserstein distance divided by the real side's projected variance, with the
/// same directions θ for both: mean_θ W2²(θ·a, θ·b) / mean_θ Var(θ·b). 0 for identical clouds;
/// 1 when a has collapsed to b's mean; scale-free (the same for a, b scaled together). b is the
/// real side (it should carry no gradient). Same shape rules as sliced_wasserstein2.
torch::Tensor sliced_wasserstein2_normalised(const torch::Tensor& a, const torch::Tensor& b,
                                             int64_t projections);

/// Entropic OT cost OT_ε(a, b) between a [N, D] and b [M, D] with uniform weights, as the dual
/// value <α, f> + <β, g> after `iters` log-domain Sinkhorn iterations (cost ‖x − y‖²).
/// Iterations run without gradients; the value is differentiable through a final iteration
/// (envelope theorem). Throws ValueError for epsilon <= 0 or iters < 1.
torch::Tensor sinkhorn_ot(const torch::Tensor& a, const torch::Tensor& b, double epsilon,
                          int64_t iters);

/// Debiased Sinkhorn divergence S_ε(a, b) = OT_ε(a, b) − ½ OT_ε(a, a) − ½ OT_ε(b, b):
/// 0 for identical clouds, and → the exact OT cost (mean squared distance of the optimal
/// assignment for N = M) as ε → 0.
torch::Tensor sinkhorn_divergence(const torch::Tensor& a, const torch::Tensor& b, double epsilon,
                                  int64_t iters);

}  // namespace unwedge
