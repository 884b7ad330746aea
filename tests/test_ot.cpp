// Optimal-transport discrepancies: sliced Wasserstein (zero, symmetry, closed form of a shift)
// and the Sinkhorn divergence against a brute-force assignment as epsilon -> 0.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <vector>

#include "unwedge/core/error.h"
#include "unwedge/methods/ot.h"

using namespace unwedge;

namespace {
const auto kD = torch::TensorOptions().dtype(torch::kDouble);

// Exact OT cost between equal-weight clouds of n points: min over all n! assignments of the
// mean squared distance (independent of the code under test).
double brute_force_ot(const torch::Tensor& a, const torch::Tensor& b) {
  const int64_t n = a.size(0);
  std::vector<int64_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  auto acc_a = a.accessor<double, 2>();
  auto acc_b = b.accessor<double, 2>();
  double best = std::numeric_limits<double>::infinity();
  do {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t d = 0; d < a.size(1); ++d) {
        const double t = acc_a[i][d] - acc_b[perm[i]][d];
        s += t * t;
      }
    }
    best = std::min(best, s / n);
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}
}  // namespace

TEST(SlicedWasserstein, ZeroForIdenticalAndSymmetric) {
  torch::manual_seed(1);
  auto a = torch::randn({128, 6}, kD);
  auto b = torch::randn({128, 6}, kD) + 0.5;
  EXPECT_NEAR(sliced_wasserstein2(a, a.clone(), 32).item<double>(), 0.0, 1e-12);
  torch::manual_seed(7);
  const double ab = sliced_wasserstein2(a, b, 32).item<double>();
  torch::manual_seed(7);  // same projections
  const double ba = sliced_wasserstein2(b, a, 32).item<double>();
  EXPECT_GT(ab, 0.01);
  EXPECT_NEAR(ab, ba, 1e-12);
  EXPECT_THROW(sliced_wasserstein2(a, b.narrow(0, 0, 10), 8), ShapeError);
  EXPECT_THROW(sliced_wasserstein2(a, b, 0), ValueError);
}

TEST(SlicedWasserstein, ShiftMatchesClosedForm) {
  // b = a + d: every projection's sorted values shift by θ·d, so SW² = E_θ[(θ·d)²] = |d|²/D.
  // Only the projection sampling is random: per projection (θ·d)² has std
  // |d|² sqrt(3/(D(D+2)) - 1/D²) = 4 · 0.148 = 0.59 for D = 8, |d|² = 4; with 4000 projections the
  // mean's std is 0.0094: tolerance 0.05 (> 5 std).
  torch::manual_seed(2);
  const int64_t D = 8;
  auto a = torch::randn({256, D}, kD);
  auto d = torch::randn({D}, kD);
  d = d / d.norm() * 2.0;  // |d|² = 4
  EXPECT_NEAR(sliced_wasserstein2(a, a + d, 4000).item<double>(), 4.0 / D, 0.05);

  // Independent Gaussian batches (N = 2000, D = 4). In 1D, W2²(μ, ν + c) = W2²(μ, ν) + c² +
  // 2c(mean ν − mean μ) exactly, so E_θ gives SW²(x, y + s·u) = SW²(x, y) + s²/D + 2s u·Δm/D
  // (Δm the empirical mean difference). Only the projection sampling deviates from that: per
  // projection (θ·d)² has std 0.25 s² for D = 4, so with 2000 projections 5 std = 0.028 s²:
  // tolerance 0.02 + 0.03 s².
  const int64_t D2 = 4;
  auto x = torch::randn({2000, D2}, kD);
  auto y = torch::randn({2000, D2}, kD);
  auto u = torch::ones({D2}, kD) / 2.0;  // unit vector
  const double dm = (u * (y.mean(0) - x.mean(0))).sum().item<double>();
  const double sw0 = sliced_wasserstein2(x, y, 2000).item<double>();
  EXPECT_LT(sw0, 0.02);  // two samples of one Gaussian
  double prev = sw0;
  for (double s : {1.0, 2.0, 3.0}) {
    const double sw = sliced_wasserstein2(x, y + s * u, 2000).item<double>();
    const double expect = sw0 + s * s / D2 + 2 * s * dm / D2;
    EXPECT_NEAR(sw, expect, 0.02 + 0.03 * s * s) << "shift " << s;
    EXPECT_GT(sw, prev) << "shift " << s;
    prev = sw;
  }
}

TEST(SlicedWasserstein, NormalisedByTheRealSidesProjectedVariance) {
  torch::manual_seed(3);
  const int64_t n = 20000, d = 8;
  auto b = torch::randn({n, d}, torch::kDouble);
  // Identical clouds: 0.
  EXPECT_NEAR(sliced_wasserstein2_normalised(b.clone(), b, 64).item<double>(), 0.0, 1e-12);
  // A cloud collapsed onto the real mean: W2² = Var(θ·b) for every θ, so exactly 1.
  auto mean = b.mean(0, true).expand({n, d}).contiguous();
  EXPECT_NEAR(sliced_wasserstein2_normalised(mean, b, 64).item<double>(), 1.0, 1e-9);
  // Two independent noise clouds whose scales differ by 2 (N(0, 4I) vs N(0, I)): per direction
  // W2² = (2 − 1)² = 1 and Var = 1, so ≈ 1 (sampling error of 20000 points: < 3 %).
  auto a = 2.0 * torch::randn({n, d}, torch::kDouble);
  EXPECT_NEAR(sliced_wasserstein2_normalised(a, b, 64).item<double>(), 1.0, 0.03);
  // Scale-free: scaling both clouds leaves it unchanged.
  torch::manual_seed(4);
  const double v1 = sliced_wasserstein2_normalised(a, b, 16).item<double>();
  torch::manual_seed(4);
  const double v2 = sliced_wasserstein2_normalised(7.0 * a, 7.0 * b, 16).item<double>();
  EXPECT_NEAR(v1, v2, 1e-9 * v1);
  EXPECT_THROW(sliced_wasserstein2_normalised(a, b.narrow(0, 0, 10), 4), ShapeError);
}

TEST(Sinkhorn, ApproachesExactOtAsEpsilonShrinks) {
  torch::manual_seed(3);
  for (int trial = 0; trial < 3; ++trial) {
    const int64_t n = 5 + trial % 2;  // 5 or 6 points: 120 or 720 assignments
    auto a = torch::rand({n, 2}, kD);
    auto b = torch::rand({n, 2}, kD) + 0.3;
    const double exact = brute_force_ot(a, b);
    const double coarse = sinkhorn_divergence(a, b, 0.1, 2000).item<double>();
    const double fine = sinkhorn_divergence(a, b, 0.002, 20000).item<double>();
    // Tolerance: 0.01 absolute at eps = 0.002 (costs here are 0.1-1).
    EXPECT_NEAR(fine, exact, 0.01) << "trial " << trial;
    EXPECT_LE(std::abs(fine - exact), std::abs(coarse - exact) + 1e-9) << "trial " << trial;
  }
  auto c = torch::rand({6, 3}, kD);
  EXPECT_NEAR(sinkhorn_divergence(c, c.clone(), 0.05, 500).item<double>(), 0.0, 1e-9);
  EXPECT_THROW(sinkhorn_divergence(c, c, 0.0, 10), ValueError);
}

TEST(Sinkhorn, GradientPullsCloudsTogether) {
  // One gradient step on a along −∇S must lower S (a descent direction).
  torch::manual_seed(4);
  auto a = torch::randn({16, 3}, kD).requires_grad_(true);
  auto b = torch::randn({16, 3}, kD) + 1.0;
  auto s = sinkhorn_divergence(a, b, 0.1, 200);
  auto g = torch::autograd::grad({s}, {a})[0];
  torch::NoGradGuard ng;
  const double s1 = sinkhorn_divergence(a - 0.5 * g, b, 0.1, 200).item<double>();
  EXPECT_LT(s1, s.item<double>());
}
