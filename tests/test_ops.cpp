// Tests of ops: wedge masks against a brute-force angle test and an independent reference file,
// T_M's projection properties, the cube group, random rotations and rotated masks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/ops/fourier.h"
#include "unwedge/ops/rotate.h"
#include "unwedge/ops/wedge.h"
#include "unwedge/ops/wedge_sign.h"

using namespace unwedge;

namespace {

double fftfreq(int64_t i, int64_t n) { return double(i < (n + 1) / 2 ? i : i - n) / n; }

/// The closed-form test of DESIGN §1, written independently of the library.
bool brute_measured(double kz, double kx, double a, double b) {
  if (kz == 0.0) return true;
  double phi = std::atan2(kz, kx) * 180.0 / M_PI;
  if (phi > 90.0) phi -= 180.0;
  if (phi <= -90.0) phi += 180.0;
  if (phi >= a - 1e-9 && phi <= b + 1e-9) return true;
  return phi == 90.0 && a <= -90.0;  // +-90 is one line
}

double cc(const at::Tensor& a, const at::Tensor& b) {
  auto x = a.to(torch::kDouble).flatten(), y = b.to(torch::kDouble).flatten();
  x = x - x.mean();
  y = y - y.mean();
  return (x * y).sum().item<double>() / std::sqrt((x * x).sum().item<double>() * (y * y).sum().item<double>());
}

/// Half-grid power weights: interior kx columns stand for two frequencies.
at::Tensor half_weights(int64_t nx, int64_t xh) {
  auto w = torch::full({xh}, 2.0, torch::kDouble);
  w[0] = 1.0;
  if (nx % 2 == 0) w[xh - 1] = 1.0;
  return w.view({1, 1, xh});
}

/// Minimal little-endian float32 MRC reader (independent of unwedge_io).
at::Tensor read_raw_mrc(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char h[1024];
  f.read(h, 1024);
  int32_t n[3], mode, nsym;
  std::memcpy(n, h, 12);
  std::memcpy(&mode, h + 12, 4);
  std::memcpy(&nsym, h + 92, 4);
  EXPECT_EQ(mode, 2);
  f.seekg(1024 + nsym);
  auto t = torch::empty({n[2], n[1], n[0]}, torch::kFloat);
  f.read(reinterpret_cast<char*>(t.data_ptr<float>()), t.numel() * 4);
  EXPECT_TRUE(f.good());
  return t;
}

at::Tensor blobs(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto v = torch::zeros({n, n, n});
  auto r = torch::arange(n, torch::kFloat) - (n - 1) / 2.0;
  auto g = torch::meshgrid({r, r, r}, "ij");
  for (int i = 0; i < 6; ++i) {
    auto c = (torch::rand({3}) - 0.5) * (n * 0.4);
    double s = 2.0 + 2.0 * torch::rand({1}).item<double>();
    auto d2 = (g[0] - c[0]).pow(2) + (g[1] - c[1]).pow(2) + (g[2] - c[2]).pow(2);
    v += torch::exp(-d2 / (2 * s * s));
  }
  return v;
}

}  // namespace

TEST(Wedge, MaskMatchesClosedFormAngleTest) {
  const std::array<int64_t, 3> shape{12, 10, 15};  // odd X: no Nyquist column
  struct Case { double a, b; bool flip; };
  for (Case c : {Case{-60, 60, false}, Case{-50, 65, false}, Case{-30, 45, true},
                 Case{-90, 90, false}, Case{-90, 40, false}, Case{0, 0, false}}) {
    WedgeGeometry g{c.a, c.b, c.flip, false};
    auto m = wedge_mask_rfft(shape, g, torch::kCPU);
    ASSERT_EQ(m.sizes(), (std::vector<int64_t>{12, 10, 8}));
    auto acc = m.accessor<float, 3>();
    double a = c.flip ? -c.b : c.a, b = c.flip ? -c.a : c.b;
    int64_t bad = 0;
    for (int64_t z = 0; z < 12; ++z)
      for (int64_t y = 0; y < 10; ++y)
        for (int64_t x = 0; x < 8; ++x)
          {
            // A Nyquist sample (kz = -0.5) also stands for +0.5: measured only if both are.
            double kz = fftfreq(z, 12), kx = double(x) / 15;
            bool want = brute_measured(kz, kx, a, b) &&
                        (std::abs(kz) != 0.5 || brute_measured(-kz, kx, a, b));
            bad += (acc[z][y][x] > 0.5f) != want;
          }
    EXPECT_EQ(bad, 0) << "range [" << c.a << ", " << c.b << "] flip " << c.flip;
  }
}

TEST(Wedge, PureKzColumnMissingUnlessFullRange) {
  auto m = wedge_mask_rfft({8, 4, 8}, WedgeGeometry{-89, 89}, torch::kCPU);
  EXPECT_EQ(m[3][1][0].item<float>(), 0.0f);  // kz != 0, kx = 0
  EXPECT_EQ(m[0][1][0].item<float>(), 1.0f);  // kz = 0 plane
  auto f = wedge_mask_rfft({8, 4, 8}, WedgeGeometry{-90, 90}, torch::kCPU);
  EXPECT_EQ(f.min().item<float>(), 1.0f);
}

TEST(Wedge, HermitianConsistentOnNyquistColumn) {
  const int64_t Z = 10, Y = 6, X = 12;
  auto m = wedge_mask_rfft({Z, Y, X}, WedgeGeometry{-50, 65}, torch::kCPU);
  auto acc = m.accessor<float, 3>();
  for (int64_t z = 0; z < Z; ++z)
    for (int64_t y = 0; y < Y; ++y) {
      EXPECT_EQ(acc[z][y][X / 2], acc[(Z - z) % Z][(Y - y) % Y][X / 2]);
      EXPECT_EQ(acc[z][y][0], acc[(Z - z) % Z][(Y - y) % Y][0]);
    }
}

TEST(Wedge, AsymmetricRangeMirroredBySignFlag) {
  const std::array<int64_t, 3> shape{16, 8, 17};
  auto a = wedge_mask_rfft(shape, WedgeGeometry{-50, 65, true}, torch::kCPU);
  auto b = wedge_mask_rfft(shape, WedgeGeometry{-65, 50, false}, torch::kCPU);
  EXPECT_TRUE(torch::equal(a, b));
  auto plain = wedge_mask_rfft(shape, WedgeGeometry{-50, 65, false}, torch::kCPU);
  EXPECT_FALSE(torch::equal(plain, b));  // the range really is asymmetric
  // Mirroring kx -> -kx equals (kz, ky) -> (-kz, -ky) on the half-grid (Hermitian symmetry).
  auto mirrored = b.flip({0, 1}).roll({1, 1}, {0, 1});
  EXPECT_TRUE(torch::equal(plain, mirrored));
}

TEST(Wedge, IndependentReferenceFilePowerInsideMeasuredRegion) {
  std::string path = std::string(UNWEDGE_SHARED_DATA) + "/reference/noise_wedge60_about_y.mrc";
  if (!std::ifstream(path).good()) GTEST_SKIP() << "reference data absent: " << path;
  auto v = read_raw_mrc(path);  // [Z, Y, X]
  auto shape = std::array<int64_t, 3>{v.size(0), v.size(1), v.size(2)};
  auto P = torch::fft::rfftn(v.to(torch::kDouble), c10::nullopt, {-3, -2, -1}, "ortho").abs().pow(2);
  P = P * half_weights(shape[2], P.size(2));
  P[0][0][0] = 0.0;  // DC carries the mean, not the wedge
  double total = P.sum().item<double>();
  auto missing = [&](WedgeGeometry g) {
    auto m = wedge_mask_rfft(shape, g, torch::kCPU).to(torch::kDouble);
    return (P * (1 - m)).sum().item<double>() / total;
  };
  double f60 = missing(WedgeGeometry{-60, 60});
  std::printf("power in unwedge's missing region for +-60: %.4f %%\n", 100 * f60);
  EXPECT_LT(f60, 0.01);
  // The check can fail: a narrower range or a wedge about X claims measured power as missing.
  EXPECT_GT(missing(WedgeGeometry{-40, 40}), 0.05);
  auto m60 = wedge_mask_rfft(shape, WedgeGeometry{-60, 60}, torch::kCPU);
  auto about_x = wedge_mask_rfft_rotated(shape, WedgeGeometry{-60, 60}, rotation_about("y", 90));
  EXPECT_GT((P * (1 - about_x.to(torch::kDouble))).sum().item<double>() / total, 0.2);
  EXPECT_FALSE(torch::equal(m60, about_x));
}

TEST(Wedge, ApplyIsIdempotentSelfAdjointProjection) {
  torch::manual_seed(3);
  for (WedgeGeometry g : {WedgeGeometry{-60, 60}, WedgeGeometry{-50, 65, false, true}}) {
    auto mask = wedge_mask_rfft({16, 12, 14}, g, torch::kCPU);
    auto v = torch::randn({2, 1, 16, 12, 14}, torch::kDouble);
    auto w = torch::randn({2, 1, 16, 12, 14}, torch::kDouble);
    auto tv = wedge_apply(v, mask), tw = wedge_apply(w, mask);
    ASSERT_EQ(tv.sizes(), v.sizes());
    double rel = (wedge_apply(tv, mask) - tv).norm().item<double>() / tv.norm().item<double>();
    EXPECT_LT(rel, 1e-12);
    double a = (tv * w).sum().item<double>(), b = (v * tw).sum().item<double>();
    EXPECT_NEAR(a, b, 1e-10 * std::abs(a) + 1e-12);
    EXPECT_LT(tv.norm().item<double>(), v.norm().item<double>());
    EXPECT_GT(tv.norm().item<double>(), 0.3 * v.norm().item<double>());
  }
}

TEST(Wedge, BandDeepInsideWedge) {
  const std::array<int64_t, 3> shape{14, 6, 15};
  WedgeGeometry g{-60, 60};
  auto band0 = wedge_band_rfft(shape, g, 0.0, torch::kCPU);
  auto mask = wedge_mask_rfft(shape, g, torch::kCPU);
  EXPECT_TRUE(torch::equal(band0, 1 - mask));
  auto band = wedge_band_rfft(shape, g, 10.0, torch::kCPU);
  auto acc = band.accessor<float, 3>();
  int64_t bad = 0, count = 0;
  for (int64_t z = 0; z < 14; ++z)
    for (int64_t y = 0; y < 6; ++y)
      for (int64_t x = 0; x < 8; ++x) {
        double kz = fftfreq(z, 14), kx = double(x) / 15;
        double phi = std::abs(std::atan2(kz, kx) * 180.0 / M_PI);
        if (phi > 90) phi = 180 - phi;
        bool want = kz != 0.0 && phi > 70.0;
        bad += (acc[z][y][x] > 0.5f) != want;
        count += want;
      }
  EXPECT_EQ(bad, 0);
  EXPECT_GT(count, 0);
  WedgeMaskCache cache;
  auto c1 = cache.band(shape, g, 10.0, torch::kCPU);
  auto c2 = cache.band(shape, g, 10.0, torch::kCPU);
  cache.mask(shape, g, torch::kCPU);
  EXPECT_EQ(c1.data_ptr(), c2.data_ptr());
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_TRUE(torch::equal(c1, band));
}

TEST(Wedge, RejectsBadRange) {
  EXPECT_THROW(wedge_mask_rfft({4, 4, 4}, WedgeGeometry{30, -30}, torch::kCPU), ValueError);
  EXPECT_THROW(wedge_mask_rfft({4, 4, 4}, WedgeGeometry{-95, 30}, torch::kCPU), ValueError);
  EXPECT_THROW(wedge_apply(torch::zeros({4, 4, 4}), torch::zeros({4, 4, 4})), ShapeError);
}

namespace {

/// A sum of plane waves cos(2 pi (iz z / N + iy y / N + ix x / N) + phase) on an N^3 grid:
/// its spectrum lives exactly on the listed integer frequencies (and their mirrors), so the
/// angle atan2(iz, ix) of each is known without any mask code.
at::Tensor plane_waves(int64_t n, const std::vector<std::array<int, 3>>& waves) {
  auto r = torch::arange(n, torch::kDouble);
  auto z = r.view({n, 1, 1}), y = r.view({1, n, 1}), x = r.view({1, 1, n});
  at::Tensor v = torch::zeros({n, n, n}, torch::kDouble);
  double phase = 0.3;
  for (const auto& w : waves) {  // {iz, iy, ix}
    v = v + torch::cos(2 * M_PI * (w[0] * z + w[1] * y + w[2] * x) / double(n) + phase);
    phase += 0.7;
  }
  return v;
}

}  // namespace

TEST(WedgeSign, BandPowerFractionClosedForms) {
  const int64_t n = 16;
  const std::array<int64_t, 3> shape{n, n, n};
  // A wave along X only lies in the kz = 0 plane (always measured): no power in any wedge band;
  // a wave along Z only lies on the pure-kz column (missing unless the range reaches 90).
  at::Tensor along_x = plane_waves(n, {{0, 0, 3}});
  at::Tensor along_z = plane_waves(n, {{4, 0, 0}});
  at::Tensor missing = 1.0 - wedge_mask_rfft(shape, WedgeGeometry{-60, 60}, torch::kCPU);
  EXPECT_NEAR(wedge_band_power_fraction(along_x, missing), 0.0, 1e-12);
  EXPECT_NEAR(wedge_band_power_fraction(along_z, missing), 1.0, 1e-12);
  // The whole half-grid (DC excluded) holds all the power; equal-amplitude waves split it evenly.
  EXPECT_NEAR(wedge_band_power_fraction(plane_waves(n, {{0, 0, 3}, {4, 0, 0}}), missing), 0.5,
              1e-12);
  EXPECT_NEAR(wedge_band_power_fraction(along_x, torch::ones_like(missing)), 1.0, 1e-12);
  EXPECT_TRUE(std::isnan(wedge_band_power_fraction(torch::ones({n, n, n}), missing)));
}

TEST(WedgeSign, PicksTheConventionWhoseBandIsEmpty) {
  // Waves at angles atan2(iz, ix) of 0, 29.7, 58.0 and -39.8 degrees: all inside -50..65 in
  // unwedge's convention; 58.0 lies outside the mirrored range -65..50.
  const std::vector<std::array<int, 3>> waves{{0, 1, 3}, {4, 2, 7}, {8, 0, 5}, {-5, 3, 6}};
  at::Tensor v = plane_waves(32, waves);
  WedgeSignChoice c = wedge_sign_detect(v, -50, 65);
  ASSERT_TRUE(c.decided);
  EXPECT_FALSE(c.sign_flip);
  EXPECT_NEAR(c.power_plus, 0.0, 1e-12);
  EXPECT_NEAR(c.power_minus, 0.25, 1e-9);  // one of four equal waves
  EXPECT_LT(c.ratio, 1e-9);
  // Mirrored along X (angle -> -angle), or along Z: the other convention.
  for (int64_t dim : {2, 0}) {
    WedgeSignChoice m = wedge_sign_detect(v.flip({dim}), -50, 65);
    ASSERT_TRUE(m.decided);
    EXPECT_TRUE(m.sign_flip) << "mirrored along dim " << dim;
    EXPECT_NEAR(m.power_minus, 0.0, 1e-12);
    EXPECT_NEAR(m.power_plus, 0.25, 1e-9);
  }
  // Both mirrored (a 180-degree turn about Y): the same convention.
  EXPECT_FALSE(wedge_sign_detect(v.flip({0, 2}), -50, 65).sign_flip);
  // A range stated the other way round (-65..50) for the original is the flipped convention.
  EXPECT_TRUE(wedge_sign_detect(v, -65, 50).sign_flip);
  // Measured on a central box (here 20 of 32 voxels: the waves no longer fit it, their power
  // leaks): the same decisions.
  WedgeSignChoice box = wedge_sign_detect(v, -50, 65, /*max_edge=*/20);
  EXPECT_FALSE(box.sign_flip);
  EXPECT_LT(box.power_plus, 0.5 * box.power_minus);
  EXPECT_TRUE(wedge_sign_detect(v.flip({2}), -50, 65, /*max_edge=*/20).sign_flip);
}

TEST(WedgeSign, SymmetricRangeIsLeftAlone) {
  at::Tensor v = plane_waves(16, {{0, 1, 3}, {3, 0, 5}});
  WedgeSignChoice c = wedge_sign_detect(v, -60, 60);
  EXPECT_FALSE(c.decided);
  EXPECT_FALSE(c.sign_flip);
  EXPECT_FALSE(wedge_sign_detect(v, -60.2, 60).decided);  // within the 0.5 degree tolerance
  EXPECT_TRUE(wedge_sign_detect(v, -59, 60).decided);
  EXPECT_NE(wedge_sign_describe(c, -60, 60, "v.mrc").find("symmetric"), std::string::npos);
  EXPECT_THROW(wedge_sign_detect(v, 30, -30), ValueError);
  EXPECT_THROW(wedge_sign_detect(torch::zeros({4, 4}), -50, 65), ShapeError);
}

TEST(Rotate, CubeGroupClosedWithInverses) {
  const auto& G = cube_rotations();
  ASSERT_EQ(G.size(), 24u);
  EXPECT_EQ(G[0], CubeRotation{});
  std::set<std::string> names;
  for (const auto& r : G) names.insert(r.name());
  EXPECT_EQ(names.size(), 24u);
  torch::manual_seed(1);
  auto v = torch::randn({2, 5, 5, 5});
  for (const auto& a : G) {
    auto R = a.matrix();
    EXPECT_NEAR(torch::det(R).item<double>(), 1.0, 1e-12);
    EXPECT_TRUE(torch::allclose(R.matmul(R.t()), torch::eye(3, torch::kDouble)));
    auto inv = cube_inverse(a);
    EXPECT_TRUE(torch::equal(cube_rotate(cube_rotate(v, a), inv), v)) << a.name();
    for (const auto& b : G) {
      auto ab = cube_compose(a, b);
      EXPECT_TRUE(names.count(ab.name())) << "not closed: " << a.name() << " o " << b.name();
      EXPECT_TRUE(torch::equal(cube_rotate(v, ab), cube_rotate(cube_rotate(v, b), a)));
    }
  }
}

TEST(Rotate, CubeMatrixMovesVoxelsAndMatchesResampling) {
  // A voxel at centred (x, y, z) = (2, -1, 1) must land at R p; rotate_volume with the same
  // matrix must give the same volume as the exact permutation.
  torch::manual_seed(2);
  auto smooth = blobs(9, 7).view({1, 1, 9, 9, 9});
  for (const auto& r : cube_rotations()) {
    auto v = torch::zeros({9, 9, 9});
    v[4 + 1][4 - 1][4 + 2] = 1.0;  // [z, y, x]
    auto out = cube_rotate(v, r);
    auto p = torch::tensor({2.0, -1.0, 1.0}, torch::kDouble);
    auto q = r.matrix().matmul(p);
    int64_t x = 4 + std::lround(q[0].item<double>()), y = 4 + std::lround(q[1].item<double>()),
            z = 4 + std::lround(q[2].item<double>());
    EXPECT_EQ(out[z][y][x].item<float>(), 1.0f) << r.name();
    auto res = rotate_volume(smooth, r.matrix().to(torch::kFloat), /*order=*/1);
    EXPECT_LT((res - cube_rotate(smooth, r)).abs().max().item<float>(), 1e-5) << r.name();
  }
}

TEST(Rotate, AboutYAndWedgeKeeping) {
  auto y4 = cube_rotations_about_y();
  ASSERT_EQ(y4.size(), 4u);
  for (const auto& r : y4) EXPECT_EQ(r.perm[1], 1);
  const std::array<int64_t, 3> shape{12, 12, 12};
  for (WedgeGeometry g : {WedgeGeometry{-60, 60}, WedgeGeometry{-50, 65}}) {
    auto keep = cube_rotations_keeping_wedge(g);
    EXPECT_EQ(keep.size(), std::abs(g.tilt_min_deg + g.tilt_max_deg) < 1e-9 ? 4u : 2u);
    auto m = wedge_mask_rfft(shape, g, torch::kCPU);
    for (const auto& r : cube_rotations()) {
      bool kept = torch::equal(wedge_mask_rfft_rotated(shape, g, r.matrix()), m);
      bool listed = std::find(keep.begin(), keep.end(), r) != keep.end();
      EXPECT_EQ(kept, listed) << r.name();
    }
  }
  EXPECT_EQ(cube_rotations_preserving({8, 8, 8}).size(), 24u);
  EXPECT_EQ(cube_rotations_preserving({4, 8, 8}).size(), 8u);  // Z fixed, Y and X may swap
}

TEST(Rotate, RightHandedAboutZ) {
  auto v = torch::zeros({1, 1, 9, 9, 9});
  v[0][0][4][4][4 + 3] = 1.0;  // x = +3
  auto out = rotate_volume(v, rotation_about("z", 90).to(torch::kFloat), /*order=*/1);
  EXPECT_NEAR(out[0][0][4][4 + 3][4].item<float>(), 1.0f, 1e-5);  // lands at y = +3
}

TEST(Rotate, RandomRotationHaarAndInverse) {
  auto gen = at::detail::createCPUGenerator(42);
  auto R = random_rotations(4000, gen, torch::kCPU, torch::kDouble);
  auto eye = torch::eye(3, torch::kDouble).expand({4000, 3, 3});
  EXPECT_LT((R.matmul(R.transpose(1, 2)) - eye).abs().max().item<double>(), 1e-12);
  // Haar moments: E[R] = 0, E[tr R] = 0, E[(tr R)^2] = 1 (4000 samples: sd ~0.016).
  EXPECT_LT(R.mean(0).abs().max().item<double>(), 0.05);
  auto tr = R.diagonal(0, 1, 2).sum(1);
  EXPECT_NEAR(tr.mean().item<double>(), 0.0, 0.06);
  EXPECT_NEAR(tr.pow(2).mean().item<double>(), 1.0, 0.1);
  auto gen2 = at::detail::createCPUGenerator(42);
  EXPECT_TRUE(torch::equal(R, random_rotations(4000, gen2, torch::kCPU, torch::kDouble)));

  auto v = blobs(32, 5).view({1, 1, 32, 32, 32});
  auto r2 = random_rotations(2, gen, torch::kCPU);  // [2,3,3]
  auto batch = v.expand({2, 1, 32, 32, 32}).contiguous();
  auto there = rotate_volume(batch, r2, 1);
  auto back = rotate_volume(there, r2.transpose(1, 2), 1);
  auto r = torch::arange(32, torch::kFloat) - 15.5;
  auto g = torch::meshgrid({r, r, r}, "ij");
  auto inside = (g[0].pow(2) + g[1].pow(2) + g[2].pow(2)) < 14.0 * 14.0;
  for (int b = 0; b < 2; ++b) {
    double c = cc(back[b][0].masked_select(inside), v[0][0].masked_select(inside));
    EXPECT_GT(c, 0.99);
    EXPECT_LT(cc(there[b][0].masked_select(inside), v[0][0].masked_select(inside)), 0.9);
  }
}

TEST(Rotate, RotatedMaskMatchesRotatedGeometry) {
  const std::array<int64_t, 3> shape{24, 24, 24};
  WedgeGeometry g{-60, 60};
  auto m = wedge_mask_rfft(shape, g, torch::kCPU);
  // About Y a rotation by alpha shifts the range: M_R(k) = M(R^T k) measures [a - alpha, b - alpha].
  auto shifted = wedge_mask_rfft_rotated(shape, g, rotation_about("y", 10));
  auto expect = wedge_mask_rfft(shape, WedgeGeometry{-70, 50}, torch::kCPU);
  EXPECT_LT((shifted != expect).to(torch::kFloat).mean().item<float>(), 0.002);
  EXPECT_GT((m != expect).to(torch::kFloat).mean().item<float>(), 0.02);
  // Interpolated rotation of the mask array agrees with the exact rotated geometry except at
  // the wedge's boundary (interpolation error).
  auto gen = at::detail::createCPUGenerator(7);
  auto R = random_rotations(3, gen, torch::kCPU);
  auto rot = rotate_mask_rfft(m, shape[2], R);  // [3, Z, Y, X/2+1]
  auto exact = wedge_mask_rfft_rotated(shape, g, R);
  auto f = fourier_freq_rfft(shape, torch::TensorOptions().dtype(torch::kFloat));
  auto r2 = f.kz.pow(2) + f.ky.pow(2) + f.kx.pow(2);
  auto inner = (r2 < 0.45 * 0.45).expand_as(exact);  // corners rotate in from outside the grid
  auto disagree = ((rot > 0.5) != (exact > 0.5)) & inner;
  double frac = disagree.to(torch::kFloat).sum().item<double>() / inner.sum().item<double>();
  std::printf("rotated-mask disagreement inside |k|<0.45: %.4f\n", frac);
  EXPECT_LT(frac, 0.05);
}
