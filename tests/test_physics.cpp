// Tests of physics: projector geometry against brute-force sums, the adjoint identity, WBP
// recovery at full range, the empty missing band and Z elongation at +-60°, and the filters.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/ops/wedge.h"
#include "unwedge/physics/projector.h"

using namespace unwedge;

namespace {

std::vector<double> angle_range(double lo, double hi, double step) {
  std::vector<double> a;
  for (double t = lo; t <= hi + 1e-9; t += step) a.push_back(t);
  return a;
}

double cc(const at::Tensor& a, const at::Tensor& b) {
  auto x = a.to(torch::kDouble).flatten(), y = b.to(torch::kDouble).flatten();
  x = x - x.mean();
  y = y - y.mean();
  return (x * y).sum().item<double>() /
         std::sqrt((x * x).sum().item<double>() * (y * y).sum().item<double>());
}

/// Smooth phantom [n, n, n]: Gaussian blobs inside the central sphere (seeded).
at::Tensor phantom(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto r = torch::arange(n, torch::kFloat) - (n - 1) / 2.0;
  auto g = torch::meshgrid({r, r, r}, "ij");
  auto v = torch::zeros({n, n, n});
  for (int i = 0; i < 8; ++i) {
    auto c = (torch::rand({3}) - 0.5) * (n * 0.45);
    double s = 1.5 + 1.5 * torch::rand({1}).item<double>();
    double amp = 0.5 + torch::rand({1}).item<double>();
    auto d2 = (g[0] - c[0]).pow(2) + (g[1] - c[1]).pow(2) + (g[2] - c[2]).pow(2);
    v += amp * torch::exp(-d2 / (2 * s * s));
  }
  return v;
}

/// Half-grid power with interior kx columns counted twice.
at::Tensor power_half(const at::Tensor& v) {
  auto P = torch::fft::rfftn(v.to(torch::kDouble), c10::nullopt, {-3, -2, -1}, "ortho").abs().pow(2);
  int64_t xh = P.size(-1);
  auto w = torch::full({xh}, 2.0, torch::kDouble);
  w[0] = 1.0;
  if (v.size(-1) % 2 == 0) w[xh - 1] = 1.0;
  return P * w;
}

/// Second moments along Z and along X of a blob's core (voxels above half its maximum).
std::pair<double, double> second_moments(const at::Tensor& v) {
  auto p = (v > 0.5 * v.max()).to(torch::kDouble);
  auto pz = p.sum(std::vector<int64_t>{1, 2}), px = p.sum(std::vector<int64_t>{0, 1});
  auto m2 = [](const at::Tensor& prof) {
    auto i = torch::arange(prof.size(0), prof.options());
    double w = prof.sum().item<double>();
    double mu = (prof * i).sum().item<double>() / w;
    return (prof * (i - mu).pow(2)).sum().item<double>() / w;
  };
  return {m2(pz), m2(px)};
}

}  // namespace

TEST(Projector, ZeroTiltIsColumnSum) {
  torch::manual_seed(1);
  auto v = torch::randn({7, 3, 9});
  auto p = project(v, {0.0});  // [1, Y, X]
  for (int64_t y = 0; y < 3; ++y)
    for (int64_t x = 0; x < 9; ++x) {
      double s = 0;
      for (int64_t z = 0; z < 7; ++z) s += v[z][y][x].item<float>();
      EXPECT_NEAR(p[0][y][x].item<float>(), s, 1e-4);
    }
}

TEST(Projector, NinetyDegreesSumsAlongX) {
  torch::manual_seed(2);
  auto v = torch::randn({8, 2, 8});
  auto p = project(v, {90.0});  // u = z at 90°: detector pixel d holds the sum over x at z = d
  for (int64_t y = 0; y < 2; ++y)
    for (int64_t d = 0; d < 8; ++d) {
      double s = 0;
      for (int64_t x = 0; x < 8; ++x) s += v[d][y][x].item<float>();
      EXPECT_NEAR(p[0][y][d].item<float>(), s, 1e-4);
    }
}

TEST(Projector, PointLandsAtDetectorCoordinate) {
  // u = x cos(theta) + z sin(theta) for a point at centred (x, z) = (3, 5).
  auto v = torch::zeros({21, 1, 21});
  v[10 + 5][0][10 + 3] = 1.0;
  for (double deg : {-55.0, -20.0, 0.0, 30.0, 70.0}) {
    auto p = project(v, {deg}, /*det_width=*/31)[0][0].to(torch::kDouble);  // [31]
    double mass = p.sum().item<double>();
    double u = (p * (torch::arange(31, torch::kDouble) - 15.0)).sum().item<double>() / mass;
    double t = deg * M_PI / 180;
    EXPECT_NEAR(u, 3 * std::cos(t) + 5 * std::sin(t), 0.1) << deg;
    // Ray-driven bilinear sampling: one voxel's integral is its value within a few %.
    EXPECT_NEAR(mass, 1.0, 0.05) << deg;
  }
}

TEST(Projector, ConservesMassOfSmoothObjects) {
  auto v = phantom(24, 9);
  double total = v.sum().item<double>();
  for (double deg : {-60.0, -33.0, 0.0, 12.5, 45.0, 90.0}) {
    double m = project(v, {deg}, /*det_width=*/40).sum().item<double>();
    EXPECT_NEAR(m / total, 1.0, 0.005) << deg;
  }
}

TEST(Projector, AdjointIdentity) {
  torch::manual_seed(3);
  std::vector<double> ang{-60, -23.5, 0, 17, 45, 88, 90};
  for (int64_t det : {int64_t(0), int64_t(15)}) {
    auto x = torch::randn({10, 6, 12});
    int64_t xd = det > 0 ? det : 12;
    auto y = torch::randn({int64_t(ang.size()), 6, xd});
    double lhs = (project(x, ang, det).to(torch::kDouble) * y).sum().item<double>();
    double rhs = (x.to(torch::kDouble) * backproject(y, ang, 10, 12)).sum().item<double>();
    EXPECT_NEAR(lhs, rhs, 1e-4 * std::abs(lhs)) << "det " << det;
  }
}

TEST(Projector, SingleTiltFillsItsFourierLine) {
  // Fourier slice: a projection at theta fills phi = atan2(kz, kx) = theta (the masks' angle).
  torch::manual_seed(4);
  auto x = torch::randn({24, 4, 24});
  auto bp = backproject(project(x, {40.0}), {40.0}, 24);
  auto P = power_half(bp);
  std::array<int64_t, 3> s{24, 4, 24};
  auto near = wedge_mask_rfft(s, WedgeGeometry{30, 50}, torch::kCPU).to(torch::kDouble);
  auto mirror = wedge_mask_rfft(s, WedgeGeometry{-50, -30}, torch::kCPU).to(torch::kDouble);
  auto kz0 = wedge_mask_rfft(s, WedgeGeometry{0, 0}, torch::kCPU).to(torch::kDouble);
  double in = (P * (near - kz0)).sum().item<double>(), out = (P * (mirror - kz0)).sum().item<double>();
  EXPECT_GT(in, 20 * out);
}

TEST(Wbp, FullRangeRecoversPhantom) {
  auto gt = phantom(32, 5);
  auto ang = angle_range(-90, 90, 1);
  auto rec = wbp(project(gt, ang), ang, 32);
  ASSERT_EQ(rec.sizes(), gt.sizes());
  double c = cc(rec, gt);
  auto a = rec.to(torch::kDouble).flatten(), b = gt.to(torch::kDouble).flatten();
  double slope = ((a - a.mean()) * (b - b.mean())).sum().item<double>() /
                 (b - b.mean()).pow(2).sum().item<double>();
  std::printf("full-range WBP: CC %.4f, scale %.3f\n", c, slope);
  EXPECT_GT(c, 0.95);
  EXPECT_NEAR(slope, 1.0, 0.15);
}

TEST(Wbp, LimitedRangeLeavesMissingBandEmptyAndElongatesZ) {
  auto gt = phantom(32, 6);
  auto ang = angle_range(-60, 60, 2);
  auto rec = wbp(project(gt, ang), ang, 32);
  std::array<int64_t, 3> s{32, 32, 32};
  auto Pg = power_half(gt), Pr = power_half(rec);
  for (double margin : {0.0, 5.0, 10.0}) {
    auto band = wedge_band_rfft(s, WedgeGeometry{-60, 60}, margin, torch::kCPU).to(torch::kDouble);
    double ratio = (Pr * band).sum().item<double>() / (Pg * band).sum().item<double>();
    std::printf("+-60 WBP: power in the missing band (margin %.0f deg) / ground truth's: %.4f\n",
                margin, ratio);
    if (margin >= 5.0) {
      EXPECT_LT(ratio, 0.02) << "margin " << margin;
    }
    if (margin == 0.0) {
      EXPECT_LT(ratio, 0.1);
    }
  }
  // A small sphere: its +-60 reconstruction is longer along Z than along X.
  auto r = torch::arange(32, torch::kFloat) - 15.5;
  auto g = torch::meshgrid({r, r, r}, "ij");
  auto sphere = torch::sigmoid((2.5 - (g[0].pow(2) + g[1].pow(2) + g[2].pow(2)).sqrt()) * 3.0);
  auto limited = wbp(project(sphere, ang), ang, 32);
  auto full_ang = angle_range(-90, 90, 2);
  auto full = wbp(project(sphere, full_ang), full_ang, 32);
  auto win = [](const at::Tensor& t) {  // 13^3 window about the centre
    return t.slice(0, 9, 22).slice(1, 9, 22).slice(2, 9, 22);
  };
  auto [lz, lx] = second_moments(win(limited));
  auto [fz, fx] = second_moments(win(full));
  std::printf("sphere second moments: +-60 z %.2f x %.2f; full z %.2f x %.2f\n", lz, lx, fz, fx);
  EXPECT_GT(lz / lx, 1.3);
  EXPECT_NEAR(fz / fx, 1.0, 0.1);
}

TEST(Wbp, Filters) {
  auto o = torch::TensorOptions().dtype(torch::kDouble);
  auto ramp = wbp_filter_1d(64, WbpOptions{}, o);  // [65]
  ASSERT_EQ(ramp.size(0), 65);
  auto k = torch::fft::rfftfreq(128, o);
  // Kak-Slaney ramp is |k| away from DC (within 2 % of Nyquist), small and positive at DC.
  EXPECT_LT((ramp - k).slice(0, 4).abs().max().item<double>(), 0.01);
  EXPECT_GT(ramp[0].item<double>(), 0.0);
  EXPECT_LT(ramp[0].item<double>(), 0.01);
  WbpOptions s5{WbpFilter::sirt_like, 5, 0.0}, s50{WbpFilter::sirt_like, 50, 0.0};
  auto f5 = wbp_filter_1d(64, s5, o), f50 = wbp_filter_1d(64, s50, o);
  EXPECT_TRUE((f5 <= f50 + 1e-12).all().item<bool>());    // more iterations, closer to the ramp
  EXPECT_TRUE((f50 <= ramp + 1e-12).all().item<bool>());
  EXPECT_LT(f5[64].item<double>(), 0.2 * ramp[64].item<double>());  // high frequencies damped
  EXPECT_NEAR(f5[1].item<double>(), ramp[1].item<double>(), 1e-12);
  WbpOptions lp{WbpFilter::ramp, 10, 0.25};
  auto fl = wbp_filter_1d(64, lp, o);
  EXPECT_EQ(fl.slice(0, 32).abs().max().item<double>(), 0.0);  // k >= 0.25 removed
  EXPECT_NEAR(fl[16].item<double>(), ramp[16].item<double>() * (0.54 + 0.46 * std::cos(M_PI * 0.5)), 1e-12);
}

TEST(Projector, Errors) {
  auto v = torch::zeros({4, 4, 4});
  EXPECT_THROW(project(v, {}), ValueError);
  EXPECT_THROW(project(v, {95.0}), ValueError);
  EXPECT_THROW(project(torch::zeros({4, 4}), {0.0}), ShapeError);
  EXPECT_THROW(wbp(torch::zeros({3, 4, 4}), {0.0, 1.0}, 4), ShapeError);
}
