// Tests of the filament cross-section measurement (eval/ring.h) on synthetic tubes whose axes
// are known by construction, and of the wedge-band power fraction against a brute-force loop.
#include <cmath>
#include <complex>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/eval/ring.h"
#include "unwedge/ops/wedge.h"

using namespace unwedge;

namespace {

// A tube along Y whose XZ section is an elliptical annulus: outer semi-axes bz (along Z) and
// ax (along X), inner boundary at `rin` times the outer one, density 1 on `bg`, anti-aliased by
// 4x4 supersampling. The centre drifts along X by `drift` voxels per Y slice (0 = along Y).
at::Tensor tube(int64_t Z, int64_t Y, int64_t X, double bz, double ax, double rin, double bg,
                double drift = 0.0) {
  at::Tensor v = torch::full({Z, Y, X}, bg, torch::kDouble);
  auto a = v.accessor<double, 3>();
  const double cz = 0.5 * (Z - 1), cx0 = 0.5 * (X - 1);
  for (int64_t y = 0; y < Y; ++y) {
    const double cx = cx0 + drift * (y - 0.5 * (Y - 1));
    for (int64_t z = 0; z < Z; ++z) {
      for (int64_t x = 0; x < X; ++x) {
        int inside = 0;
        for (int sz = 0; sz < 4; ++sz) {
          for (int sx = 0; sx < 4; ++sx) {
            double dz = (z - 0.375 + 0.25 * sz - cz) / bz, dx = (x - 0.375 + 0.25 * sx - cx) / ax;
            double r = std::sqrt(dz * dz + dx * dx);
            inside += (r <= 1.0 && r >= rin);
          }
        }
        a[z][y][x] += inside / 16.0;
      }
    }
  }
  return v;
}

at::Tensor with_noise(const at::Tensor& v, double sigma, uint64_t seed) {
  torch::manual_seed(seed);
  return v + sigma * torch::randn(v.sizes(), torch::kDouble);
}

// Gaussian blur along Z (dim 0) with a normalised discrete kernel truncated at 5 sigma.
at::Tensor blur_z(const at::Tensor& v, double sigma) {
  const int64_t h = static_cast<int64_t>(std::ceil(5 * sigma));
  at::Tensor k = torch::arange(-h, h + 1, torch::kDouble);
  k = torch::exp(-0.5 * k * k / (sigma * sigma));
  k = k / k.sum();
  at::Tensor out = torch::zeros_like(v);
  for (int64_t i = -h; i <= h; ++i) {
    // out[z] += k[i] * v[z - i], zero outside
    const int64_t Z = v.size(0);
    const int64_t lo = std::max<int64_t>(0, i), hi = std::min<int64_t>(Z, Z + i);
    out.slice(0, lo, hi) += k[i + h].item<double>() * v.slice(0, lo - i, hi - i);
  }
  return out;
}

}  // namespace

TEST(RingProfile, TopHatWallsCrossAtTheEdges) {
  // Background 0, walls of height 1 at [10, 14] and [26, 30], centre 20: the half level 0.5 is
  // crossed halfway between the last background and the first wall sample (9.5 and 30.5).
  std::vector<double> p(41, 0.0);
  for (int i = 10; i <= 14; ++i) p[i] = 1.0;
  for (int i = 26; i <= 30; ++i) p[i] = 1.0;
  ProfileExtent e = profile_outer_extent(p, 20.0, 0.0);
  EXPECT_NEAR(e.lo, 9.5, 1e-12);
  EXPECT_NEAR(e.hi, 30.5, 1e-12);
  EXPECT_NEAR(e.width, 21.0, 1e-12);
  EXPECT_FALSE(e.clipped);
  // Asymmetric walls: each side uses its own half level (left wall 2 high -> level 1).
  for (int i = 10; i <= 14; ++i) p[i] = 2.0;
  p[9] = 0.5;  // below 1: the crossing is between 9 (0.5) and 10 (2) at 9 + 0.5/1.5
  e = profile_outer_extent(p, 20.0, 0.0);
  EXPECT_NEAR(e.lo, 9.0 + 0.5 / 1.5, 1e-12);
  // A wall touching the end never falls below half: clipped, extent to the end.
  for (int i = 30; i <= 40; ++i) p[i] = 1.0;
  e = profile_outer_extent(p, 20.0, 0.0);
  EXPECT_TRUE(e.clipped);
  EXPECT_NEAR(e.hi, 40.0, 1e-12);
}

TEST(RingProfile, BorderStatsAreMedianAndMad) {
  // Border frame of a 20x20 section (2 pixels wide): values 3 + N(0, 0.5); inside 100.
  torch::manual_seed(1);
  at::Tensor s = 3.0 + 0.5 * torch::randn({20, 20}, torch::kDouble);
  s.slice(0, 2, 18).slice(1, 2, 18).fill_(100.0);
  BorderStats b = section_border_stats(s);
  EXPECT_NEAR(b.background, 3.0, 0.1);  // 144 samples: the median's error is ~0.05
  EXPECT_NEAR(b.noise, 0.5, 0.1);
}

// Elliptical annuli with known axes, noise and background: the half-maximum extents are the
// outer diameters (within 0.75 voxel) and the ratio is bz/ax within 0.05; the second-moment ratio
// of an affinely stretched annulus is exactly bz/ax (within 0.03 with noise).
TEST(Ring, EllipticalAnnulusRatioAsConstructed) {
  struct Case { double bz, ax; };
  for (Case c : {Case{12, 12}, Case{15, 10}, Case{10, 14}}) {
    at::Tensor v = with_noise(tube(48, 32, 64, c.bz, c.ax, 0.7, 5.0), 0.5, 7);
    RingOptions o;
    RingMeasure m = ring_measure(v, o);
    SCOPED_TRACE("bz " + std::to_string(c.bz) + " ax " + std::to_string(c.ax));
    EXPECT_NEAR(m.centre_z, 23.5, 0.3);
    EXPECT_NEAR(m.centre_a, 31.5, 0.3);
    EXPECT_NEAR(m.extent_z.width, 2 * c.bz, 0.75);
    EXPECT_NEAR(m.extent_a.width, 2 * c.ax, 0.75);
    EXPECT_FALSE(m.extent_z.clipped);
    EXPECT_NEAR(m.ratio_z_over_a, c.bz / c.ax, 0.05);
    EXPECT_NEAR(m.moment_ratio_z_over_a, c.bz / c.ax, 0.03);
    EXPECT_NEAR(m.border.background, 5.0, 0.05);
    // Alignment finds no drift on a straight tube.
    EXPECT_NEAR(m.slope_a, 0.0, 0.02);
  }
}

// A Gaussian smear along Z of sigma adds sigma^2 to the section's Z variance (convolution adds
// variances): moment ratio = sqrt((Vz + s^2) / Vx) with V = semi-axis^2 (1 + rin^2) / 4 for a
// uniform elliptical annulus (closed form), within 2 %. The half-maximum extent grows along Z
// only.
TEST(Ring, GaussianSmearAlongZAddsVariance) {
  const double bz = 10, ax = 10, rin = 0.7, sigma = 3.0;
  at::Tensor v = blur_z(tube(64, 16, 48, bz, ax, rin, 0.0), sigma);
  RingOptions o;
  o.threshold = 0.0;  // noise-free: every positive voxel counts, as in the closed form
  o.align = false;
  RingMeasure m = ring_measure(v, o);
  const double vz = bz * bz * (1 + rin * rin) / 4, vx = ax * ax * (1 + rin * rin) / 4;
  const double want = std::sqrt((vz + sigma * sigma) / vx);
  EXPECT_NEAR(m.moment_ratio_z_over_a, want, 0.02 * want);
  EXPECT_NEAR(m.moment_extent_a, std::sqrt(8 * vx), 0.02 * std::sqrt(8 * vx));
  EXPECT_GT(m.ratio_z_over_a, 1.05);
  EXPECT_NEAR(m.extent_a.width, 2 * ax, 0.75);
}

// A filament drifting across X by 0.25 voxel per Y slice: tracking recovers the drift and the
// round section; averaging without tracking smears it along X.
TEST(Ring, TrackingUndoesDrift) {
  at::Tensor v = with_noise(tube(40, 64, 72, 11, 11, 0.7, 0.0, 0.25), 0.3, 3);
  RingOptions o;
  RingMeasure m = ring_measure(v, o);
  EXPECT_NEAR(m.slope_a, 0.25, 0.02);
  EXPECT_NEAR(m.slope_z, 0.0, 0.02);
  EXPECT_NEAR(m.ratio_z_over_a, 1.0, 0.06);
  o.align = false;
  std::printf("drift 0.25/slice: tracked slope %.3f ratio %.3f; untracked ratio %.3f\n", m.slope_a,
              m.ratio_z_over_a, ring_measure(v, o).ratio_z_over_a);
  RingMeasure raw = ring_measure(v, o);
  EXPECT_LT(raw.ratio_z_over_a, 0.85);  // 16 voxels of drift widen X
  EXPECT_GT(raw.extent_a.width, m.extent_a.width + 8);
}

// The filament along X: the same tube transposed measures the same.
TEST(Ring, AxisX) {
  at::Tensor v = tube(48, 32, 64, 15, 10, 0.7, 0.0);
  RingOptions o;
  RingMeasure my = ring_measure(v, o);
  o.axis = 'x';
  RingMeasure mx = ring_measure(v.permute({0, 2, 1}).contiguous(), o);
  EXPECT_NEAR(mx.ratio_z_over_a, my.ratio_z_over_a, 1e-9);
  EXPECT_THROW(ring_section(v, RingOptions{'z'}), ValueError);
}

// The missing wedge itself: a round tube filtered by a +-60 deg wedge loses its wedge-band power
// (fraction ~0) and its section stretches along Z.
TEST(Ring, WedgeSmearStretchesZAndEmptiesTheBand) {
  at::Tensor v = tube(48, 32, 48, 12, 12, 0.7, 0.0);
  RingOptions o;
  RingMeasure before = ring_measure(v, o);
  at::Tensor m = wedge_mask_rfft({48, 32, 48}, o.wedge, torch::kCPU);
  at::Tensor w = wedge_apply(v.to(torch::kFloat), m).to(torch::kDouble);
  RingMeasure after = ring_measure(w, o);
  EXPECT_GT(before.wedge_power_fraction, 0.02);
  EXPECT_LT(after.wedge_power_fraction, 1e-6);
  EXPECT_LT(after.deep_wedge_power_fraction, 1e-6);
  EXPECT_NEAR(before.ratio_z_over_a, 1.0, 0.05);
  // The side walls stretch along Z: the half-maximum extent grows (measured 1.20). The second
  // moments need not: the wedge also erases the top and bottom walls (measured 0.95).
  EXPECT_GT(after.ratio_z_over_a, before.ratio_z_over_a + 0.1);
  std::printf("round tube: ratio %.3f moment %.3f wedge %.4f; after +-60 wedge: ratio %.3f "
              "moment %.3f wedge %.2g\n",
              before.ratio_z_over_a, before.moment_ratio_z_over_a, before.wedge_power_fraction,
              after.ratio_z_over_a, after.moment_ratio_z_over_a, after.wedge_power_fraction);
}

// Wedge power fraction against a brute-force loop over the full FFT grid (odd Z and X, so no
// Nyquist ambiguity): missing = kz != 0 and the folded angle atan2(kz, kx) outside the range.
TEST(WedgePower, MatchesBruteForce) {
  const int64_t Z = 9, Y = 8, X = 11;
  torch::manual_seed(5);
  at::Tensor v = torch::randn({Z, Y, X}, torch::kDouble);
  WedgeGeometry g;
  g.tilt_min_deg = -50;
  g.tilt_max_deg = 65;
  at::Tensor band = 1.0 - wedge_mask_rfft({Z, Y, X}, g, torch::kCPU);
  double got = wedge_power_fraction(v, band);
  at::Tensor f = torch::fft::fftn(v - v.mean());
  auto fa = f.accessor<c10::complex<double>, 3>();
  auto freq = [](int64_t i, int64_t n) { return double(i <= (n - 1) / 2 ? i : i - n) / n; };
  double in = 0, total = 0;
  for (int64_t z = 0; z < Z; ++z) {
    for (int64_t y = 0; y < Y; ++y) {
      for (int64_t x = 0; x < X; ++x) {
        if (z == 0 && y == 0 && x == 0) continue;
        double p = std::norm(std::complex<double>(fa[z][y][x].real(), fa[z][y][x].imag()));
        total += p;
        double kz = freq(z, Z), kx = freq(x, X);
        if (kz == 0) continue;
        double phi = std::atan2(kz, kx) * 180 / M_PI;  // (-180, 180]
        if (phi > 90) phi -= 180;
        if (phi <= -90) phi += 180;
        if (phi < g.tilt_min_deg || phi > g.tilt_max_deg) in += p;
      }
    }
  }
  EXPECT_NEAR(got, in / total, 1e-9);
  EXPECT_GT(got, 0.2);  // white noise: about the band's share of coefficients
}
