// Simulator tests: determinism, no overlap, independent half noise, CC range, template mass,
// bilayer profile, tilt schemes. Tiny sizes; tolerances stated next to each check.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/io/mrc.h"
#include "unwedge/physics/projector.h"
#include "unwedge/sim/simulate.h"

using namespace unwedge;

namespace {

std::string maps_dir() { return std::string(UNWEDGE_SOURCE_DIR) + "/data/templates_10A"; }

/// A small, fast simulation: 48x48x24 voxels at 10 Å, ±60° in 6° steps.
SimParams small_params(uint64_t seed) {
  SimParams p = sim_preset("tiny");
  p.maps_dir = maps_dir();
  p.specimen.shape = {24, 48, 48};
  p.specimen.thickness_A = 200;
  p.specimen.n_particles = 8;
  p.specimen.vesicle_radius_max_A = 80;
  p.acquisition.thickness_A = 200;
  p.acquisition.tilt_step_deg = 6;
  p.seed = seed;
  return p;
}

double cc(const at::Tensor& a, const at::Tensor& b) {  // independent of pearson_cc
  at::Tensor x = a.to(torch::kFloat64).flatten(), y = b.to(torch::kFloat64).flatten();
  x = x - x.mean();
  y = y - y.mean();
  return ((x * y).sum() / (x.norm() * y.norm())).item<double>();
}

}  // namespace

TEST(Sim, SameSeedIdenticalDifferentSeedDifferent) {
  SimResult a = simulate_run(small_params(7), false);
  SimResult b = simulate_run(small_params(7), false);
  SimResult c = simulate_run(small_params(8), false);
  EXPECT_TRUE(torch::equal(a.specimen.potential, b.specimen.potential));
  EXPECT_TRUE(torch::equal(a.acquisition.full, b.acquisition.full));
  EXPECT_TRUE(torch::equal(a.tomo, b.tomo));
  EXPECT_TRUE(torch::equal(a.even, b.even));
  EXPECT_TRUE(torch::equal(a.odd, b.odd));
  ASSERT_EQ(a.specimen.particles.size(), b.specimen.particles.size());
  for (size_t i = 0; i < a.specimen.particles.size(); ++i) {
    EXPECT_EQ(a.specimen.particles[i].centre_xyz, b.specimen.particles[i].centre_xyz);
    EXPECT_EQ(a.specimen.particles[i].quat_wxyz, b.specimen.particles[i].quat_wxyz);
  }
  EXPECT_FALSE(torch::equal(a.specimen.potential, c.specimen.potential));
  EXPECT_FALSE(torch::equal(a.tomo, c.tomo));
}

TEST(Sim, ParticlesDoNotOverlapAndAreUnitQuaternions) {
  SimParams p = small_params(3);
  p.specimen.n_particles = 30;  // crowded: rejection sampling must still avoid overlaps
  SimResult r = simulate_run(p, false);
  const auto& ps = r.specimen.particles;
  ASSERT_GE(ps.size(), 3u);
  for (size_t i = 0; i < ps.size(); ++i) {
    const auto& q = ps[i].quat_wxyz;
    EXPECT_NEAR(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3], 1.0, 1e-9);
    EXPECT_GE(q[0], 0.0);
    for (size_t j = i + 1; j < ps.size(); ++j) {
      double d = std::hypot(ps[i].centre_xyz[0] - ps[j].centre_xyz[0],
                            ps[i].centre_xyz[1] - ps[j].centre_xyz[1],
                            ps[i].centre_xyz[2] - ps[j].centre_xyz[2]);
      EXPECT_GE(d, ps[i].radius_vox + ps[j].radius_vox - 1.0)  // 1 voxel: centre rounding
          << "particles " << i << " and " << j;
    }
  }
}

// The noise of the two halves (half minus its noise-free expectation) is independent.
TEST(Sim, HalvesHaveIndependentNoise) {
  for (HalfSplit split : {HalfSplit::frame, HalfSplit::tilt}) {
    SimParams p = small_params(11);
    p.acquisition.split = split;
    SimResult r = simulate_run(p, false);
    const int64_t Z = p.specimen.shape[0];
    const Acquisition& a = r.acquisition;
    at::Tensor ne = r.even - wbp(a.even_clean, a.even_angles, Z);
    at::Tensor no = r.odd - wbp(a.odd_clean, a.odd_angles, Z);
    EXPECT_LT(std::abs(cc(ne, no)), 0.02) << half_split_name(split);
    // The halves themselves share the signal.
    EXPECT_GT(cc(r.even, r.odd), 0.05) << half_split_name(split);
  }
}

TEST(Sim, FrameSplitHalvesSumToFullDose) {
  SimResult r = simulate_run(small_params(5), false);
  // d is linear in the counts: d_full = (d_even + d_odd) / 2 (float rounding, 1e-4).
  at::Tensor diff = r.acquisition.full - 0.5 * (r.acquisition.even + r.acquisition.odd);
  EXPECT_LT(diff.abs().max().item<double>(), 1e-4);
}

TEST(Sim, TinyPresetCorrelatesWithGroundTruthInRange) {
  SimParams p = sim_preset("tiny");
  p.maps_dir = maps_dir();
  p.seed = 1;
  SimResult r = simulate_run(p, false);
  double c = cc(r.tomo, r.specimen.potential);
  // Designed for CC 0.2-0.4 (noisy like binned real tomograms); sane range with margin.
  EXPECT_GT(c, 0.12);
  EXPECT_LT(c, 0.55);
  EXPECT_NEAR(c, r.cc_tomo_gt, 1e-9);
  // Without noise the tomogram must correlate better.
  EXPECT_GT(cc(r.clean_tomo, r.specimen.potential), c + 0.05);
}

TEST(Sim, ResamplingKeepsTemplateMass) {
  MrcReadOptions ro;
  ro.permissive = true;  // the shipped maps are pre-2014 files (nversion 0)
  Volume v = mrc_read(maps_dir() + "/4v4r.mrc", ro);
  double m0 = v.data.to(torch::kFloat64).sum().item<double>() * 1000.0;  // 10 Å voxels
  for (double to : {7.0, 13.0, 20.0}) {
    at::Tensor r = template_resample(v.data, 10.0, to);
    double m = r.to(torch::kFloat64).sum().item<double>() * to * to * to;
    EXPECT_NEAR(m / m0, 1.0, 0.03) << "to " << to << " A";  // within 3 %
    EXPECT_EQ(r.size(0), (int64_t)std::ceil(v.data.size(0) * 10.0 / to - 1e-9));
  }
}

TEST(Sim, TemplatesAreNormalisedAndBounded) {
  auto t = templates_load_dir(maps_dir(), 10.0);
  ASSERT_EQ(t.size(), 26u);
  for (const auto& x : t) {
    EXPECT_GE(x.density.min().item<double>(), 0.0) << x.name;
    EXPECT_GT(x.radius_vox, 2.0) << x.name;
    EXPECT_LE(x.radius_vox, std::sqrt(3.0) * x.density.size(0) / 2 + 1.5) << x.name;
  }
}

// Closed form of the bilayer: two head-group Gaussians 40 Å apart, a lighter core between.
TEST(Sim, VesicleHasTwoLeaflets) {
  SimParams p = sim_preset("tiny");
  p.use_maps = false;
  p.specimen.voxel_A = 5.0;
  p.specimen.shape = {48, 48, 48};
  p.specimen.thickness_A = 240;
  p.specimen.n_particles = 0;
  p.specimen.n_actin = 0;
  p.specimen.n_gold = 0;
  p.specimen.ice_noise = 0;
  p.specimen.n_vesicles = 1;
  p.specimen.vesicle_radius_min_A = 60;
  p.specimen.vesicle_radius_max_A = 70;
  p.seed = 2;
  SpecimenParams sp = p.specimen;
  Specimen s = specimen_make(sp, {});
  ASSERT_EQ(s.n_vesicles, 1);
  at::Tensor v = s.potential.to(torch::kFloat64);
  // Centre = centroid of the positive density (the shell is symmetric about it).
  at::Tensor w = v.clamp_min(0);
  auto idx = [&](int d) {
    std::vector<int64_t> shape{1, 1, 1};
    shape[d] = v.size(d);
    return torch::arange(v.size(d), torch::kFloat64).view(shape);
  };
  double tot = w.sum().item<double>();
  double cz = (w * idx(0)).sum().item<double>() / tot, cy = (w * idx(1)).sum().item<double>() / tot,
         cx = (w * idx(2)).sum().item<double>() / tot;
  at::Tensor r = ((idx(0) - cz).pow(2) + (idx(1) - cy).pow(2) + (idx(2) - cx).pow(2)).sqrt() * 5.0;
  // Radial profile in 2.5 Å bins.
  int nb = 48;
  at::Tensor bin = (r / 2.5).floor().clamp_max(nb - 1).to(torch::kLong).flatten();
  at::Tensor sum = torch::zeros({nb}, torch::kFloat64).index_add_(0, bin, v.flatten());
  at::Tensor cnt = torch::zeros({nb}, torch::kFloat64).index_add_(0, bin, torch::ones_like(v.flatten()));
  at::Tensor prof = sum / cnt.clamp_min(1);
  // Local maxima above half the global maximum: exactly two, 40 ± 5 Å apart, with the core
  // between them below ice (negative) and below both peaks.
  double pmax = prof.max().item<double>();
  std::vector<int> peaks;
  for (int i = 1; i + 1 < nb; ++i) {
    double a = prof[i].item<double>();
    if (a > 0.5 * pmax && a >= prof[i - 1].item<double>() && a >= prof[i + 1].item<double>())
      peaks.push_back(i);
  }
  ASSERT_EQ(peaks.size(), 2u);
  double sep = (peaks[1] - peaks[0]) * 2.5;
  EXPECT_NEAR(sep, 40.0, 5.0);
  double core = prof.slice(0, peaks[0], peaks[1] + 1).min().item<double>();
  EXPECT_LT(core, 0.0);
  // And the function itself against the closed form at a few radii (1e-9).
  at::Tensor rr = torch::tensor({50.0, 70.0, 80.0, 90.0, 110.0}, torch::kFloat64);
  BilayerProfile bp;
  at::Tensor got = bilayer_profile(rr, 80.0, bp);
  for (int i = 0; i < 5; ++i) {
    double x = rr[i].item<double>();
    double want = 1.2 * (std::exp(-std::pow(x - 60, 2) / 72.0) + std::exp(-std::pow(x - 100, 2) / 72.0)) -
                  0.2 * std::exp(-std::pow(x - 80, 2) / 128.0);
    EXPECT_NEAR(got[i].item<double>(), want, 1e-9);
  }
}

TEST(Sim, TiltSchemes) {
  auto a = tilt_angles(-60, 60, 3);
  ASSERT_EQ(a.size(), 41u);
  EXPECT_DOUBLE_EQ(a.front(), -60.0);
  EXPECT_DOUBLE_EQ(a.back(), 60.0);
  auto o = tilt_acquisition_order(a, TiltOrder::dose_symmetric);
  ASSERT_EQ(o.size(), a.size());
  EXPECT_DOUBLE_EQ(a[o[0]], 0.0);
  // Hagen scheme: 0, +3, +6, -3, -6, +9, +12, ...
  EXPECT_DOUBLE_EQ(a[o[1]], 3.0);
  EXPECT_DOUBLE_EQ(a[o[2]], 6.0);
  EXPECT_DOUBLE_EQ(a[o[3]], -3.0);
  EXPECT_DOUBLE_EQ(a[o[4]], -6.0);
  std::vector<int64_t> sorted = o;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < (int64_t)a.size(); ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_THROW(tilt_order_parse("zigzag"), ValueError);
}

TEST(Sim, ElectronOptics) {
  // Independent textbook values at 300 kV: lambda = 0.01969 Å, sigma = 6.53e-4 rad/(V Å).
  EXPECT_NEAR(electron_wavelength_A(300), 0.019687, 2e-5);
  EXPECT_NEAR(interaction_constant(300), 6.526e-4, 5e-6);
  // CTF at k = 0 is -A (amplitude contrast only).
  at::Tensor c = ctf_2d(32, 32, 10.0, 3.0, 2.7, 300, 0.07);
  EXPECT_NEAR(c[0][0].item<double>(), -0.07, 1e-6);
}

TEST(Sim, AtomicModelGivesATemplate) {
  std::string pdb = std::string(UNWEDGE_SHARED_DATA) + "/structures/6z6u.pdb";
  if (!templates_have_gemmi()) GTEST_SKIP() << "built without gemmi";
  if (!std::filesystem::exists(pdb)) GTEST_SKIP() << pdb << " absent";
  SimTemplate t = template_from_atoms(pdb, 10.0);
  EXPECT_TRUE(torch::isfinite(t.density).all().item<bool>());
  EXPECT_GT(t.radius_vox, 2.0);
  EXPECT_GT(t.density.sum().item<double>(), 10.0);
}

TEST(Sim, UnknownPresetListsKnownOnes) {
  try {
    sim_preset("huge");
    FAIL();
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("standard"), std::string::npos);
  }
}
