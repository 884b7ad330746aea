// Tiled posterior sampling (infer/sample.h) with test-only posterior methods whose draws and
// weights are known in closed form, checked against whole-volume computations done here.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/eval/evaluate.h"
#include "unwedge/eval/metrics.h"
#include "unwedge/infer/calibrate.h"
#include "unwedge/infer/sample.h"
#include "unwedge/methods/bootstrap.h"
#include "unwedge/methods/posterior.h"
#include "unwedge/methods/wedge_common.h"
#include "unwedge/ops/fourier.h"
#include "unwedge/ops/wedge.h"

using namespace unwedge;

namespace {

// The no-op parts of a Method (no training, no weights) shared by the test methods below.
class StubMethod : public Method {
 public:
  bool needs_halves() const override { return false; }
  torch::Tensor loss(const Batch&) override { return torch::zeros({}); }
  std::vector<torch::Tensor> parameters() override { return {}; }
  void train(bool) override {}
  void to(torch::Device) override {}
  void save(torch::serialize::OutputArchive&) const override {}
  void load(torch::serialize::InputArchive&) override {}
  nlohmann::json options_json() const override { return nlohmann::json::object(); }
  std::array<int64_t, 3> receptive_field() const override { return {1, 1, 1}; }
  std::array<int64_t, 3> size_multiple() const override { return {1, 1, 1}; }
};

// Draw k of y is f_k(y) = 2 y + (k - 2) * 0.3 * (1 + y^2) (pointwise, so tiles agree exactly),
// plus, when `noise` > 0, noise * N(0, 1) from a generator seeded with seed + k (one field per
// tile). Log weights -0.4 k (+ 5, not normalised: the sampler must normalise them).
class FakePosterior : public StubMethod, public PosteriorMethod {
 public:
  explicit FakePosterior(double noise = 0.0, double acceptance = -1)
      : noise_(noise), acceptance_(acceptance) {}
  std::string name() const override { return "fake-posterior"; }
  bool stochastic() const override { return true; }
  torch::Tensor restore(const torch::Tensor& sub) override { return 2 * sub; }
  std::array<int64_t, 3> receptive_field() const override { return {5, 5, 5}; }
  std::array<int64_t, 3> size_multiple() const override { return {4, 4, 4}; }

  static torch::Tensor f(const torch::Tensor& y, int64_t k) {
    return 2 * y + double(k - 2) * 0.3 * (1 + y * y);
  }
  static torch::Tensor log_w(int64_t n) {
    return torch::arange(n, torch::kDouble) * -0.4 + 5.0;  // [n]
  }

  PosteriorDraws draw(const torch::Tensor& sub, const MethodWedge& wedge,
                      const PosteriorOptions& o) override {
    last_wedge = wedge;
    ++calls;
    std::vector<torch::Tensor> xs;
    for (int64_t k = 0; k < o.n; ++k) {
      torch::Tensor x = f(sub, k);
      if (noise_ > 0) {
        auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + uint64_t(k));
        x = x + noise_ * at::randn(sub.sizes(), gen, torch::kFloat);
      }
      xs.push_back(x);
    }
    PosteriorDraws d;
    d.samples = torch::stack(xs);                                            // [n, B, 1, ...]
    d.log_weights = log_w(o.n).view({-1, 1}).expand({o.n, sub.size(0)}).clone();  // [n, B]
    d.acceptance = acceptance_;
    return d;
  }

  MethodWedge last_wedge;
  int calls = 0;

 private:
  double noise_, acceptance_;
};

// A plain Method (no PosteriorMethod).
class NotPosterior : public StubMethod {
 public:
  std::string name() const override { return "plain"; }
  torch::Tensor restore(const torch::Tensor& sub) override { return sub; }
};

SampleOptions small_opts(int64_t tile, int64_t overlap, int64_t n) {
  SampleOptions o;
  o.tiling.tile = tile;
  o.tiling.overlap = overlap;
  o.posterior.n = n;
  o.std_pool = 0;       // per-voxel spreads, as the checks below compute them
  o.std_structure = 0;  // the draws' spread alone (the structure term has its own tests)
  return o;
}

// Brute force: weighted quantile at one voxel, sorted pairs, mid-point interpolation.
double brute_quantile(std::vector<std::pair<double, double>> vw, double q) {
  std::sort(vw.begin(), vw.end());
  double total = 0;
  for (auto& p : vw) total += p.second;
  std::vector<double> pos;
  double c = 0;
  for (auto& p : vw) {
    pos.push_back((c + p.second / 2) / total);
    c += p.second;
  }
  if (q <= pos.front()) return vw.front().first;
  if (q >= pos.back()) return vw.back().first;
  for (size_t i = 1; i < vw.size(); ++i) {
    if (q < pos[i]) {
      double t = (q - pos[i - 1]) / (pos[i] - pos[i - 1]);
      return vw[i - 1].first + t * (vw[i].first - vw[i - 1].first);
    }
  }
  return vw.back().first;
}

}  // namespace

TEST(WeightedQuantile, EqualWeightsGiveHazenQuantiles) {
  at::Tensor v = torch::tensor({4.0f, 1.0f, 3.0f, 2.0f}).view({4, 1});
  at::Tensor w = torch::ones({4});
  // Sorted 1, 2, 3, 4 at positions 0.125, 0.375, 0.625, 0.875.
  EXPECT_NEAR(weighted_quantile(v, w, 0.5).item<float>(), 2.5f, 1e-6);
  EXPECT_NEAR(weighted_quantile(v, w, 0.25).item<float>(), 1.5f, 1e-6);
  EXPECT_NEAR(weighted_quantile(v, w, 0.05).item<float>(), 1.0f, 1e-6);  // held at the end
  EXPECT_NEAR(weighted_quantile(v, w, 0.95).item<float>(), 4.0f, 1e-6);
}

TEST(WeightedQuantile, MatchesBruteForceWithUnequalWeights) {
  torch::manual_seed(4);
  const int64_t n = 7, V = 300;
  at::Tensor v = torch::randn({n, V});
  at::Tensor w = torch::rand({n}) + 0.05;
  for (double q : {0.05, 0.25, 0.5, 0.9, 0.95}) {
    at::Tensor got = weighted_quantile(v, w, q);
    for (int64_t i = 0; i < V; ++i) {
      std::vector<std::pair<double, double>> vw;
      for (int64_t k = 0; k < n; ++k) {
        vw.push_back({v[k][i].item<double>(), w[k].item<double>()});
      }
      ASSERT_NEAR(got[i].item<float>(), brute_quantile(vw, q), 1e-5) << "q " << q << " voxel " << i;
    }
  }
}

TEST(SampleIntervalZ, NormalQuantiles) {
  EXPECT_NEAR(sample_interval_z(0.9), 1.6448536269514722, 1e-9);
  EXPECT_NEAR(sample_interval_z(0.5), 0.6744897501960817, 1e-9);
  EXPECT_THROW(sample_interval_z(1.0), ValueError);
  EXPECT_THROW(sample_interval_z(0.0), ValueError);
}

TEST(Sample, TiledMomentsAndBoundsEqualTheWholeVolumeComputation) {
  FakePosterior m;
  torch::manual_seed(7);
  at::Tensor vol = torch::randn({21, 26, 30});  // not multiples of the size multiple (4)
  const int64_t n = 5;
  // Reference computed here on the whole volume, in double.
  at::Tensor lw = FakePosterior::log_w(n);
  at::Tensor w = (lw - lw.logsumexp(0)).exp();  // [n]
  std::vector<at::Tensor> xs;
  for (int64_t k = 0; k < n; ++k) xs.push_back(FakePosterior::f(vol.to(torch::kDouble), k));
  at::Tensor x = torch::stack(xs);                     // [n, Z, Y, X]
  at::Tensor wv = w.view({-1, 1, 1, 1});
  at::Tensor ref_mean = (x * wv).sum(0);
  at::Tensor ref_std = ((x - ref_mean).pow(2) * wv).sum(0).sqrt();

  for (int64_t tile : {int64_t(12), int64_t(64)}) {  // many tiles; one tile per axis
    SampleOptions o = small_opts(tile, /*overlap=*/tile == 12 ? 6 : 0, n);
    o.interval = 0.8;
    SampleVolumes s = sample_volume(m, vol, o, /*keep_samples=*/true);
    EXPECT_TRUE(torch::allclose(s.mean.to(torch::kDouble), ref_mean, 1e-5, 1e-5)) << "tile " << tile;
    EXPECT_TRUE(torch::allclose(s.std.to(torch::kDouble), ref_std, 1e-4, 1e-4)) << "tile " << tile;
    for (int64_t k = 0; k < n; ++k) {
      EXPECT_TRUE(torch::allclose(s.samples[size_t(k)].to(torch::kDouble), x[k], 1e-5, 1e-5))
          << "sample " << k;
    }
    // Bounds: brute-force weighted quantiles at 200 voxels.
    at::Tensor flat_x = x.reshape({n, -1});
    at::Tensor lo = s.lower.reshape({-1}), hi = s.upper.reshape({-1});
    for (int64_t i = 0; i < flat_x.size(1); i += flat_x.size(1) / 200) {
      std::vector<std::pair<double, double>> vw;
      for (int64_t k = 0; k < n; ++k) vw.push_back({flat_x[k][i].item<double>(), w[k].item<double>()});
      ASSERT_NEAR(lo[i].item<float>(), brute_quantile(vw, 0.1), 1e-4) << "voxel " << i;
      ASSERT_NEAR(hi[i].item<float>(), brute_quantile(vw, 0.9), 1e-4) << "voxel " << i;
    }
    // ESS of the known weights, every tile.
    const double ess = 1.0 / w.pow(2).sum().item<double>();
    EXPECT_NEAR(s.stats.ess_min, ess, 1e-4);
    EXPECT_NEAR(s.stats.ess_mean, ess, 1e-4);
    EXPECT_EQ(s.stats.acceptance, -1);
    EXPECT_EQ(s.stats.draws, n);
  }
}

TEST(Sample, BoundsContainTheMeanAndGaussianBoundsAreMeanPlusMinusZStd) {
  FakePosterior m(/*noise=*/0.2);
  torch::manual_seed(8);
  at::Tensor vol = torch::randn({16, 20, 24});
  SampleOptions o = small_opts(12, 6, 16);
  o.posterior.seed = 3;
  SampleVolumes q = sample_volume(m, vol, o);
  EXPECT_TRUE((q.lower <= q.mean + 1e-6).all().item<bool>());
  EXPECT_TRUE((q.upper >= q.mean - 1e-6).all().item<bool>());
  EXPECT_TRUE((q.upper - q.lower > 0).all().item<bool>());
  o.bounds = "gaussian";
  SampleVolumes g = sample_volume(m, vol, o);
  EXPECT_TRUE(torch::allclose(g.mean, q.mean));
  EXPECT_TRUE(torch::allclose(g.lower, g.mean - 1.6448536 * g.std, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(g.upper, g.mean + 1.6448536 * g.std, 1e-5, 1e-5));
  o.bounds = "median";
  EXPECT_THROW(sample_volume(m, vol, o), ValueError);
}

TEST(Sample, SameSeedSameOutputOtherSeedOtherOutput) {
  FakePosterior m(/*noise=*/0.3);
  torch::manual_seed(9);
  at::Tensor vol = torch::randn({12, 18, 20});
  SampleOptions o = small_opts(12, 4, 4);
  o.posterior.seed = 11;
  SampleVolumes a = sample_volume(m, vol, o, true), b = sample_volume(m, vol, o, true);
  EXPECT_TRUE(torch::equal(a.mean, b.mean));
  EXPECT_TRUE(torch::equal(a.std, b.std));
  EXPECT_TRUE(torch::equal(a.lower, b.lower));
  for (size_t k = 0; k < a.samples.size(); ++k) EXPECT_TRUE(torch::equal(a.samples[k], b.samples[k]));
  o.posterior.seed = 12;
  SampleVolumes c = sample_volume(m, vol, o);
  EXPECT_GT((c.mean - a.mean).abs().max().item<float>(), 1e-3);
}

TEST(Sample, XzPlanesAreTheSamplesCentralXzSlice) {
  FakePosterior m(/*noise=*/0.1);
  torch::manual_seed(10);
  at::Tensor vol = torch::randn({14, 22, 18});
  SampleOptions o = small_opts(12, 4, 5);
  o.xz_planes = 3;
  SampleVolumes s = sample_volume(m, vol, o, true);
  ASSERT_EQ(s.stats.xz.size(), 3u);
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_TRUE(torch::allclose(s.stats.xz[k], s.samples[k].select(1, 22 / 2), 1e-5, 1e-5));
  }
}

TEST(Sample, HalvesSplitTheDrawsAndPoolTheirWeights) {
  FakePosterior m;
  torch::manual_seed(12);
  at::Tensor even = torch::randn({12, 16, 16}), odd = torch::randn({12, 16, 16});
  const int64_t n = 5;  // 3 from even (draws 0..2), 2 from odd (draws 0..1 of its own call)
  auto reader = [](const at::Tensor& v) {
    return TileReader([v](int64_t z0, int64_t z1, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
      return v.slice(0, z0, z1).slice(1, y0, y1).slice(2, x0, x1);
    });
  };
  at::Tensor mean = torch::empty_like(even), sd = torch::empty_like(even);
  auto into = [](at::Tensor& t) {
    return SlabSink([&t](int64_t z0, const at::Tensor& s) { t.slice(0, z0, z0 + s.size(0)).copy_(s); });
  };
  at::Tensor lo = torch::empty_like(even), hi = torch::empty_like(even);
  SampleSinks sinks{into(mean), into(sd), into(lo), into(hi), {}};
  SampleOptions o = small_opts(8, 4, n);
  o.wedge.tilt_min_deg = -50;
  sample_stream(m, {12, 16, 16}, {reader(even), reader(odd)}, sinks, o);
  EXPECT_EQ(m.last_wedge.tilt_min_deg, -50);
  // Reference: weights normalised within each half, scaled by 3/5 and 2/5.
  auto half_mean = [](const at::Tensor& y, int64_t nr) {
    at::Tensor lw = FakePosterior::log_w(nr);
    at::Tensor w = (lw - lw.logsumexp(0)).exp();
    at::Tensor s = torch::zeros_like(y, torch::kDouble);
    for (int64_t k = 0; k < nr; ++k) s += w[k].item<double>() * FakePosterior::f(y.to(torch::kDouble), k);
    return s;
  };
  at::Tensor ref = 0.6 * half_mean(even, 3) + 0.4 * half_mean(odd, 2);
  EXPECT_TRUE(torch::allclose(mean.to(torch::kDouble), ref, 1e-5, 1e-5));
}

TEST(Sample, AcceptanceIsAveragedOverTiles) {
  FakePosterior m(/*noise=*/0.0, /*acceptance=*/0.625);
  at::Tensor vol = torch::randn({8, 16, 16});
  SampleVolumes s = sample_volume(m, vol, small_opts(8, 4, 3));
  EXPECT_NEAR(s.stats.acceptance, 0.625, 1e-12);
  EXPECT_GT(s.stats.tiles, 1);
  EXPECT_EQ(m.calls, s.stats.tiles);  // batch 1: one draw() call per tile
}

TEST(Sample, NonPosteriorMethodIsAClearError) {
  NotPosterior m;
  at::Tensor vol = torch::randn({8, 8, 8});
  try {
    sample_volume(m, vol, small_opts(8, 0, 2));
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("plain"), std::string::npos) << e.what();
  }
  FakePosterior f;
  SampleOptions o = small_opts(8, 0, 0);
  EXPECT_THROW(sample_volume(f, vol, o), ValueError);
}

// Draws equal within a tile (no spread) but different between tiles: the blended std is the
// spread of the window-weighted mixture of tile means, zero where one tile has all the weight.
class TileConstant : public FakePosterior {
 public:
  PosteriorDraws draw(const torch::Tensor& sub, const MethodWedge&, const PosteriorOptions& o) override {
    const double value = double(calls++);  // tile i (batch 1, in plan order) draws i everywhere
    PosteriorDraws d;
    d.samples = torch::full({o.n, sub.size(0), 1, sub.size(2), sub.size(3), sub.size(4)}, value);
    d.log_weights = torch::zeros({o.n, sub.size(0)});
    return d;
  }
};

TEST(Sample, StdIncludesDisagreementBetweenOverlappingTiles) {
  TileConstant m;
  at::Tensor vol = torch::zeros({8, 8, 40});
  SampleOptions o = small_opts(16, 8, 3);
  SampleVolumes s = sample_volume(m, vol, o);
  // Tiles run along X only; reference mixture from the plan's X windows.
  TilePlan plan = restore_plan(m, {8, 8, 40}, o.tiling);
  ASSERT_EQ(plan.axes[0].starts.size(), 1u);
  ASSERT_EQ(plan.axes[1].starts.size(), 1u);
  const TileAxis& ax = plan.axes[2];
  ASSERT_GT(ax.starts.size(), 1u);
  at::Tensor wsum = ax.weight_sum().to(torch::kDouble);
  at::Tensor m1 = torch::zeros({ax.padded}, torch::kDouble), m2 = torch::zeros_like(m1);
  for (size_t i = 0; i < ax.starts.size(); ++i) {
    at::Tensor a = ax.window(i).to(torch::kDouble);
    m1.slice(0, ax.starts[i], ax.starts[i] + ax.tile) += a * double(i);
    m2.slice(0, ax.starts[i], ax.starts[i] + ax.tile) += a * double(i * i);
  }
  m1 = m1 / wsum;
  m2 = m2 / wsum;
  at::Tensor ref_std = (m2 - m1 * m1).clamp_min(0).sqrt().slice(0, 0, 40);  // [X]
  at::Tensor got = s.std[3][4].to(torch::kDouble);                            // [X]
  EXPECT_TRUE(torch::allclose(got, ref_std, 1e-4, 1e-4)) << got << ref_std;
  EXPECT_GT(ref_std.max().item<double>(), 0.1);       // some voxels blend two tiles
  EXPECT_EQ(ref_std[0].item<double>(), 0.0);          // the first voxels see one tile
  EXPECT_TRUE(torch::allclose(s.mean[3][4].to(torch::kDouble), m1.slice(0, 0, 40), 1e-5, 1e-5));
}

TEST(Sample, SlabsEqualTheSameSectionsOfAWholeRun) {
  FakePosterior m(/*noise=*/0.2);
  torch::manual_seed(13);
  at::Tensor vol = torch::randn({26, 14, 18});
  SampleOptions o = small_opts(12, 4, 4);
  o.posterior.seed = 5;
  SampleVolumes whole = sample_volume(m, vol, o, true);
  for (auto [zb, ze] : {std::pair<int64_t, int64_t>{0, 9}, {9, 17}, {17, 26}, {5, 5}}) {
    o.tiling.z_begin = zb;
    o.tiling.z_end = ze;
    at::Tensor mean = torch::full_like(vol, 1e9), lower = torch::full_like(vol, 1e9);
    at::Tensor sd = torch::full_like(vol, 1e9), upper = torch::full_like(vol, 1e9);
    auto into = [](at::Tensor& t) {
      return SlabSink([&t](int64_t z0, const at::Tensor& s) { t.slice(0, z0, z0 + s.size(0)).copy_(s); });
    };
    SampleSinks sinks{into(mean), into(sd), into(lower), into(upper), {}};
    TileReader rd = [&](int64_t z0, int64_t z1, int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
      return vol.slice(0, z0, z1).slice(1, y0, y1).slice(2, x0, x1);
    };
    sample_stream(m, {26, 14, 18}, {rd}, sinks, o);
    auto same = [&](const at::Tensor& got, const at::Tensor& ref) {
      return torch::equal(got.slice(0, zb, ze), ref.slice(0, zb, ze)) &&
             (got.slice(0, 0, zb) == 1e9).all().item<bool>() &&   // nothing outside the slab
             (got.slice(0, ze, 26) == 1e9).all().item<bool>();
    };
    EXPECT_TRUE(same(mean, whole.mean)) << zb << " " << ze;
    EXPECT_TRUE(same(sd, whole.std)) << zb << " " << ze;
    EXPECT_TRUE(same(lower, whole.lower)) << zb << " " << ze;
    EXPECT_TRUE(same(upper, whole.upper)) << zb << " " << ze;
  }
  o.tiling.z_begin = 20;
  o.tiling.z_end = 30;
  EXPECT_THROW(sample_volume(m, vol, o), ValueError);
}

// The merge of the ranks' statistics, against the numbers worked out by hand: tiles summed, the
// ESS minimum of the ranks that drew (rank 2 drew nothing), ESS mean and MALA acceptance weighted
// by tiles (acceptance only over ranks that report one), the slowest rank's seconds, the XZ
// planes summed; one rank's statistics come back as they are.
TEST(SampleStats, MergeOfTheRanksAgreesWithTheHandComputation) {
  auto rank_stats = [](int64_t tiles, double ess_min, double ess_mean, double acc, double s,
                       float plane) {
    SampleStats st;
    st.tiles = tiles;
    st.draws = 6;
    st.ess_min = ess_min;
    st.ess_mean = ess_mean;
    st.acceptance = acc;
    st.seconds = s;
    st.xz = {torch::full({3, 4}, plane), torch::full({3, 4}, 2 * plane)};
    return st;
  };
  const std::vector<SampleStats> ranks{rank_stats(2, 4.0, 5.0, 0.5, 10.0, 1.0f),
                                       rank_stats(6, 3.0, 4.0, -1.0, 12.5, 0.25f),
                                       rank_stats(0, 0.0, 0.0, -1.0, 14.0, 0.0f),
                                       rank_stats(4, 3.5, 6.0, 0.8, 11.0, 2.0f)};
  const SampleStats m = sample_stats_merge(ranks);
  EXPECT_EQ(m.tiles, 12);
  EXPECT_EQ(m.draws, 6);
  EXPECT_DOUBLE_EQ(m.ess_min, 3.0);
  EXPECT_DOUBLE_EQ(m.ess_mean, (2 * 5.0 + 6 * 4.0 + 4 * 6.0) / 12);
  EXPECT_DOUBLE_EQ(m.acceptance, (2 * 0.5 + 4 * 0.8) / 6);
  EXPECT_DOUBLE_EQ(m.seconds, 14.0);
  ASSERT_EQ(m.xz.size(), 2u);
  EXPECT_TRUE(torch::allclose(m.xz[0], torch::full({3, 4}, 3.25f)));
  EXPECT_TRUE(torch::allclose(m.xz[1], torch::full({3, 4}, 6.5f)));
  // No rank reports an acceptance: none in the merge.
  std::vector<SampleStats> no_mala = ranks;
  for (auto& r : no_mala) r.acceptance = -1;
  EXPECT_EQ(sample_stats_merge(no_mala).acceptance, -1);
  const SampleStats one = sample_stats_merge({ranks[1]});
  EXPECT_EQ(one.tiles, 6);
  EXPECT_EQ(one.acceptance, -1);
  EXPECT_EQ(one.ess_mean, 4.0);
  EXPECT_THROW(sample_stats_merge({}), ValueError);
  std::vector<SampleStats> odd_planes = ranks;
  odd_planes[3].xz.pop_back();
  EXPECT_THROW(sample_stats_merge(odd_planes), ShapeError);
}

// ---- The equivariant bootstrap (methods/bootstrap.h) with an identity "restoration" G ----

namespace {

// Orthonormal full-grid power spectrum of v [..., Z, Y, X], float64 (an FFT of its own, not the
// half-grid helpers the bootstrap uses).
torch::Tensor full_power(const torch::Tensor& v) {
  return torch::fft::fftn(v.to(torch::kDouble), c10::nullopt, {-3, -2, -1}, "ortho").abs().square();
}

}  // namespace

TEST(EquivariantBootstrap, IdentityOnTheBandEveryRotationKeepsHasNoSpread) {
  // v lies in the band that is measured in every rotated frame the bootstrap draws from, and
  // below the noise shell: then R^-1 T_M(R v) = v for each R and the estimated noise is ~0, so
  // every draw of the identity G must give v back.
  const std::array<int64_t, 3> shape{16, 16, 16};
  WedgeGeometry g;  // +-60
  auto m = wedge_mask_rfft(shape, g, torch::kCPU).view({1, 1, 16, 16, 9}).to(torch::kFloat);
  auto k = fourier_freq_rfft(shape, torch::TensorOptions().dtype(torch::kFloat));
  auto low = ((k.kz.square() + k.ky.square() + k.kx.square()).sqrt() < 0.25).to(torch::kFloat);
  torch::manual_seed(3);
  auto v0 = torch::randn({1, 1, 16, 16, 16});
  auto v = wedge_apply(wedge_apply(v0, low.view({1, 1, 16, 16, 9})), m);
  const auto choices = wedge_moving_cube_rotations(shape, g, 0.5);
  ASSERT_FALSE(choices.empty());
  for (const auto& r : choices) {  // projections diagonal in Fourier: they commute
    v = cube_rotate(wedge_apply(cube_rotate(v, r), m), cube_inverse(r));
  }
  v = v - v.mean();
  ASSERT_GT(v.norm().item<double>(), 0.05 * v0.norm().item<double>()) << "empty common band";
  v = v / v.abs().max();  // unit peak: the noise floor (std 1e-4 from the clamped level) is small
  NotPosterior identity;
  EquivariantBootstrap boot(identity);
  PosteriorOptions o;
  o.n = 6;
  o.seed = 11;
  PosteriorDraws d = boot.draw(v, MethodWedge{}, o);
  ASSERT_EQ(d.samples.sizes(), (std::vector<int64_t>{6, 1, 1, 16, 16, 16}));
  const double scale = v.abs().max().item<double>();
  EXPECT_LT((d.samples - v.unsqueeze(0)).abs().max().item<double>(), 1e-3 * scale);
  EXPECT_NEAR(d.log_weights.exp().sum(0).item<double>(), 1.0, 1e-6);
}

namespace {

// G(v) = v times 1 + 0.1·x along X: not equivariant under the flips of X.
class RampAlongX : public StubMethod {
 public:
  std::string name() const override { return "ramp"; }
  torch::Tensor restore(const torch::Tensor& sub) override {
    return sub * (1 + 0.1 * torch::arange(sub.size(4), sub.options()));
  }
};

}  // namespace

TEST(EquivariantBootstrap, CentredOnTheFlipAveragedRestoration) {
  // The draws' mean is x̂ as `unwedge restore` gives it by default: the average of G over the
  // four wedge-keeping flips, X flipped in two of them. For the ramp 1 + 0.1·x on 16 voxels that
  // average is the constant 1 + 0.1·15/2 = 1.75.
  torch::manual_seed(4);
  auto v = torch::randn({1, 1, 16, 16, 16});
  RampAlongX ramp;
  EquivariantBootstrap boot(ramp);
  PosteriorOptions o;
  o.n = 3;
  o.seed = 2;
  PosteriorDraws d = boot.draw(v, MethodWedge{}, o);
  EXPECT_TRUE(torch::allclose(d.samples.mean(0), 1.75 * v, 1e-4, 1e-4));
  EXPECT_FALSE(torch::allclose(d.samples.mean(0), ramp.restore(v), 1e-2, 1e-2));
}

TEST(EquivariantBootstrap, NoiseHasTheDataLevelOnTheMeasuredBandOnly) {
  // Data = wedge-filtered white noise of variance 0.49: the pseudo-observations' noise must have
  // that variance per measured coefficient (full-grid FFT here) and nothing in the wedge.
  const std::array<int64_t, 3> shape{24, 24, 24};
  WedgeGeometry g;
  g.tilt_min_deg = -50;
  g.tilt_max_deg = 65;
  auto m_half = wedge_mask_rfft(shape, g, torch::kCPU).to(torch::kFloat);
  auto m = m_half.view({1, 1, 24, 24, 13});
  torch::manual_seed(5);
  auto y = wedge_apply(0.7 * torch::randn({2, 1, 24, 24, 24}), m);
  auto sigma2 = posterior_noise_variance_highfreq(y, m, 0.3, "test");
  ASSERT_EQ(sigma2.sizes(), (std::vector<int64_t>{2}));
  for (int64_t b = 0; b < 2; ++b) EXPECT_NEAR(sigma2[b].item<double>(), 0.49, 0.49 * 0.05);
  NotPosterior identity;
  EquivariantBootstrap boot(identity);
  auto [r, noise] = boot.draw_rotation_noise(shape, g, m, sigma2, 7);
  auto full = fourier_half_to_full(m_half, 24).to(torch::kDouble);  // [Z, Y, X]
  auto p = full_power(noise);                                        // [2, 1, Z, Y, X]
  for (int64_t b = 0; b < 2; ++b) {
    const double measured = (p[b][0] * full).sum().item<double>() / full.sum().item<double>();
    const double missing = (p[b][0] * (1 - full)).sum().item<double>();
    EXPECT_NEAR(measured, sigma2[b].item<double>(), 0.05 * sigma2[b].item<double>());
    EXPECT_LT(missing, 1e-8);
  }
  // The rotation moves the wedge: some missing coefficients of R's frame are measured here.
  const auto keep = cube_rotations_keeping_wedge(g);
  EXPECT_EQ(std::find(keep.begin(), keep.end(), r), keep.end()) << r.name();
  // Same seed, same draw; another seed, other noise.
  auto again = boot.draw_rotation_noise(shape, g, m, sigma2, 7);
  EXPECT_EQ(again.first, r);
  EXPECT_TRUE(torch::equal(again.second, noise));
  EXPECT_FALSE(torch::equal(boot.draw_rotation_noise(shape, g, m, sigma2, 8).second, noise));
}

TEST(EquivariantBootstrap, SampleWithUqBootstrapTakesAnyMethod) {
  NotPosterior identity;  // deterministic: refused with uq = model, drawn with bootstrap
  torch::manual_seed(9);
  at::Tensor vol = torch::randn({16, 16, 16});
  SampleOptions o = small_opts(16, 0, 4);
  EXPECT_THROW(sample_volume(identity, vol, o), ValueError);
  o.posterior.uq = "bootstrap";
  SampleVolumes s = sample_volume(identity, vol, o, /*keep_samples=*/true);
  ASSERT_EQ(s.samples.size(), 4u);
  // One tile: the mean and std are the draws' plain moments, computed here from the draws.
  auto st = torch::stack(s.samples);
  EXPECT_TRUE(torch::allclose(s.mean, st.mean(0), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(s.std, st.std(0, /*unbiased=*/false), 1e-4, 1e-4));
  EXPECT_GT(s.std.mean().item<double>(), 0.01);  // noise and moved wedges: the draws differ
  o.posterior.uq = "sure";
  EXPECT_THROW(sample_volume(identity, vol, o), ValueError);
}

// Brute force: the smallest c (tried over every voxel's exact need, computed with plain loops)
// whose bounds mean -/+ c * (distance to the bound) hold at least k = ceil(q (V + 1)) (at most V)
// of the truths.
double brute_conformal_scale(const std::vector<double>& t, const std::vector<double>& m,
                             const std::vector<double>& l, const std::vector<double>& u, double q) {
  const size_t v = t.size();
  const size_t k = std::min(v, size_t(std::ceil(q * double(v + 1))));
  std::vector<double> candidates{0.0};
  for (size_t i = 0; i < v; ++i) {
    const double w = t[i] >= m[i] ? u[i] - m[i] : m[i] - l[i];
    if (w > 0) candidates.push_back(std::abs(t[i] - m[i]) / w);
  }
  std::sort(candidates.begin(), candidates.end());
  for (double c : candidates) {
    size_t inside = 0;  // truth within c times the bound's distance from the mean
    for (size_t i = 0; i < v; ++i) {
      const double w = t[i] >= m[i] ? u[i] - m[i] : m[i] - l[i];
      if (t[i] == m[i] || (w > 0 && std::abs(t[i] - m[i]) / w <= c)) ++inside;
    }
    if (inside >= k) return c;
  }
  return std::numeric_limits<double>::infinity();
}

TEST(ConformalBoundsScale, MatchesABruteForceSearch) {
  torch::manual_seed(21);
  for (double q : {0.5, 0.8, 0.9}) {
    const int64_t v = 257;
    auto m = torch::randn({v}, torch::kDouble);
    auto l = m - torch::rand({v}, torch::kDouble) * 2;  // asymmetric bounds
    auto u = m + torch::rand({v}, torch::kDouble) * 0.5;
    auto t = m + torch::randn({v}, torch::kDouble);
    auto vec = [](const at::Tensor& x) {
      return std::vector<double>(x.data_ptr<double>(), x.data_ptr<double>() + x.numel());
    };
    const double c = conformal_bounds_scale(t, m, l, u, q);
    EXPECT_DOUBLE_EQ(c, brute_conformal_scale(vec(t), vec(m), vec(l), vec(u), q)) << "q " << q;
    // Scaling the bounds by 2 halves the factor; a voxel on its mean needs nothing.
    EXPECT_NEAR(conformal_bounds_scale(t, m, m - 2 * (m - l), m + 2 * (u - m), q), c / 2, 1e-12);
  }
  auto z = torch::zeros({10}, torch::kDouble);
  EXPECT_EQ(conformal_bounds_scale(z, z, z - 1, z + 1, 0.9), 0.0);
  // Truth off the mean where the bounds have no width: no factor covers it.
  EXPECT_TRUE(std::isinf(conformal_bounds_scale(z + 1, z, z, z, 0.9)));
  EXPECT_THROW(conformal_bounds_scale(z, z, z, z, 1.0), ValueError);
  EXPECT_THROW(conformal_bounds_scale(z, z.narrow(0, 0, 5), z, z, 0.5), ShapeError);
}

// A linear Gaussian model with a wedge: the specimen is 0 (restore gives 0), the data are noise
// on the measured band, and the "posterior" draws y + spread·ξ (white), a std that is wrong by a
// known factor. With both halves, the calibration's pseudo-problem has the data's own noise
// n = T_M((even − odd)/√2) and the known answer 0. The true scale is the factor that calibrates a
// run on fresh data of the same noise, found there with the truth (the oracle); the data-only
// factor must be within 5 % of it. Both are near the variance ratio sqrt(var(n) + spread²/K) /
// spread, about 5 % above it (a std from K = 16 draws makes error/std t-distributed, heavier
// tailed than a Gaussian); with the factor, the fresh run's intervals cover their nominal mass.
class ZeroSpecimenPosterior : public StubMethod, public PosteriorMethod {
 public:
  explicit ZeroSpecimenPosterior(double spread) : spread_(spread) {}
  std::string name() const override { return "zero-specimen"; }
  bool stochastic() const override { return true; }
  torch::Tensor restore(const torch::Tensor& sub) override { return torch::zeros_like(sub); }
  PosteriorDraws draw(const torch::Tensor& sub, const MethodWedge&, const PosteriorOptions& o) override {
    std::vector<torch::Tensor> xs;
    for (int64_t k = 0; k < o.n; ++k) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + uint64_t(k));
      xs.push_back(sub + spread_ * at::randn(sub.sizes(), gen, torch::kFloat));
    }
    PosteriorDraws d;
    d.samples = torch::stack(xs);
    d.log_weights = torch::full({o.n, sub.size(0)}, -std::log(double(o.n)), torch::kFloat);
    return d;
  }

 private:
  double spread_;
};

TEST(CalibrateSpread, LinearGaussianModelRecoversTheTrueScale) {
  const int64_t s = 24, n = 16;
  const double spread = 0.25;
  ZeroSpecimenPosterior method(spread);
  SampleOptions o = small_opts(s, 0, n);
  o.wedge.tilt_min_deg = -60;
  o.wedge.tilt_max_deg = 60;
  torch::manual_seed(31);
  at::Tensor even = torch::randn({s, s, s}), odd = torch::randn({s, s, s});
  WedgeMaskCache masks;
  const at::Tensor m = masks.mask({s, s, s}, WedgeGeometry{-60, 60}, torch::kCPU).view({1, 1, s, s, s / 2 + 1});
  auto measured = [&](const at::Tensor& x) { return wedge_apply(x.view({1, 1, s, s, s}), m).view({s, s, s}); };
  const double var_n = measured((even - odd) / std::sqrt(2.0)).square().mean().item<double>();
  const double truth_scale = std::sqrt(var_n + spread * spread / double(n)) / spread;
  const SpreadCalibration c = calibrate_spread(method, even, o, odd);
  EXPECT_EQ(c.noise, "halves");
  const at::Tensor fresh = measured(torch::randn({s, s, s}));
  const SampleVolumes plain = sample_volume(method, fresh, o);
  const double oracle = gaussian_reliability_scale(torch::zeros_like(fresh), plain.mean, plain.std);
  EXPECT_NEAR(c.std_scale, oracle, 0.05 * oracle);
  EXPECT_NEAR(c.std_scale, truth_scale, 0.10 * truth_scale);
  EXPECT_GT(c.std_scale, truth_scale);
  // The fresh data sampled with the factor: |mean − 0| <= z std at each level.
  o.std_scale = c.std_scale;
  const SampleVolumes v = sample_volume(method, fresh, o);
  for (double p : {0.5, 0.9}) {
    const double cover = (v.mean.abs() <= sample_interval_z(p) * v.std).to(torch::kDouble).mean().item<double>();
    EXPECT_NEAR(cover, p, 0.03) << "level " << p;
  }
  // The per-level multipliers of the scaled std: every level's interval covers its mass of the
  // fresh data within 0.02 (the t-distributed ratio of a 16-draw std defeats one factor alone).
  ASSERT_EQ(c.level_z.size(), 4u);
  for (size_t k = 0; k < 4; ++k) {
    const double cover = (v.mean.abs() <= c.level_z[k] * v.std).to(torch::kDouble).mean().item<double>();
    EXPECT_NEAR(cover, c.levels[k], 0.02) << "level " << c.levels[k];
  }
  // Per band (the band-passed draws' spread, as eval scores it): the band's own multipliers
  // cover each level of the fresh data's band-passed answer (0) within 0.03.
  const SampleVolumes vs = sample_volume(method, fresh, o, /*keep_samples=*/true);
  const WedgeGeometry g{-60, 60};
  for (auto [band, z] : {std::pair<const char*, const std::vector<double>*>{"measured_band", &c.level_z_measured},
                         std::pair<const char*, const std::vector<double>*>{"wedge_band", &c.level_z_wedge}}) {
    ASSERT_EQ(z->size(), 4u);
    const BandPosterior bp = posterior_band(vs.mean, vs.samples, g, band, o.std_pool);
    for (size_t k = 0; k < 4; ++k) {
      const double cover = (bp.mean.abs() <= (*z)[k] * c.std_scale * bp.std).to(torch::kDouble).mean().item<double>();
      EXPECT_NEAR(cover, c.levels[k], 0.03) << band << " level " << c.levels[k];
    }
  }
  // Pooling the variance over a neighbourhood (white draws: the same spread everywhere) makes
  // the std nearly exact (its population variance (K − 1)/K of the spread's), so the factor
  // comes out at the variance ratio over sqrt((K − 1)/K), Gaussian errors no longer t-tailed.
  o.std_pool = 1.5;
  o.std_scale = 1.0;
  const SpreadCalibration pooled = calibrate_spread(method, even, o, odd);
  const double pooled_scale = truth_scale / std::sqrt((n - 1.0) / n);
  EXPECT_NEAR(pooled.std_scale, pooled_scale, 0.03 * pooled_scale);
}

// structure_power against closed forms: 0 on a constant; on a ramp 0 away from the borders (a
// symmetric low-pass keeps a ramp); a·sin(πx/2 + π/4) squares to a²/2 at every voxel, and the
// σ = 4 low-pass (taps exp(−u²/32) for |u| <= 12, normalised) passes g = Σ taps·cos(πu/2) of
// it, summed here, so a²(1 − g)²/2 inside.
TEST(StructurePower, ZeroOnSmoothVolumesAndHalfTheSquaredAmplitudeOfFineDetail) {
  EXPECT_TRUE(torch::allclose(structure_power(torch::full({8, 9, 10}, 3.0, torch::kDouble), 1.5),
                              torch::zeros({8, 9, 10}, torch::kDouble), 0, 1e-12));
  const int64_t nx = 64;
  at::Tensor xs = torch::arange(nx, torch::kDouble);
  at::Tensor ramp = (0.3 * xs).view({1, 1, nx}).expand({6, 5, nx}).contiguous();
  at::Tensor inner = structure_power(ramp, 1.5).slice(2, 20, 44);
  EXPECT_LT(inner.abs().max().item<double>(), 1e-9);
  const double a = 2.5;
  at::Tensor wave = (a * torch::sin(xs * (M_PI / 2) + M_PI / 4)).view({1, 1, nx}).expand({6, 5, nx}).contiguous();
  double sum = 0, gain = 0;
  for (int u = -12; u <= 12; ++u) {
    sum += std::exp(-u * u / 32.0);
    gain += std::exp(-u * u / 32.0) * std::cos(M_PI / 2 * u);
  }
  gain /= sum;
  const double want = a * a * (1 - gain) * (1 - gain) / 2;
  EXPECT_LT(gain, 1e-3);
  for (double pool : {0.0, 1.5}) {
    at::Tensor p = structure_power(wave, pool).slice(2, 20, 44);
    EXPECT_TRUE(torch::allclose(p, torch::full_like(p, want), 1e-9, 1e-9)) << "pool " << pool;
  }
  EXPECT_THROW(structure_power(wave, -1.0), ValueError);
}

// The sampler's structure term on one tile covering the volume (window 1 everywhere): the
// variance grows by exactly β · structure_power(mean), and each quantile bound's distance from
// the mean by z²β · structure_power in quadrature; the band posterior's variance likewise.
TEST(Sample, StructureTermAddsToTheVarianceAndWidensTheBoundsInQuadrature) {
  FakePosterior m(/*noise=*/0.2);
  torch::manual_seed(9);
  at::Tensor vol = torch::randn({16, 16, 16});
  SampleOptions o = small_opts(16, 0, 8);
  o.std_pool = 1.5;
  const SampleVolumes plain = sample_volume(m, vol, o, /*keep_samples=*/true);
  const double beta = 0.7, z = sample_interval_z(o.interval);
  o.std_structure = beta;
  const SampleVolumes s = sample_volume(m, vol, o);
  EXPECT_TRUE(torch::equal(s.mean, plain.mean));
  const at::Tensor added = beta * structure_power(plain.mean.to(torch::kDouble), 1.5);
  EXPECT_GT(added.min().item<double>(), 0.0);
  EXPECT_TRUE(torch::allclose((s.std.to(torch::kDouble).square() - plain.std.to(torch::kDouble).square()),
                              added, 1e-4, 1e-4));
  const at::Tensor mean = plain.mean.to(torch::kDouble);
  const at::Tensor lo0 = mean - plain.lower.to(torch::kDouble), hi0 = plain.upper.to(torch::kDouble) - mean;
  EXPECT_TRUE(torch::allclose(mean - s.lower.to(torch::kDouble), (lo0.square() + z * z * added).sqrt(), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(s.upper.to(torch::kDouble) - mean, (hi0.square() + z * z * added).sqrt(), 1e-4, 1e-4));
  const WedgeGeometry g{-60, 60};
  const BandPosterior b0 = posterior_band(plain.mean, plain.samples, g, "wedge_band", 1.5);
  const BandPosterior b1 = posterior_band(plain.mean, plain.samples, g, "wedge_band", 1.5, beta);
  EXPECT_TRUE(torch::allclose(b1.std.square() - b0.std.square(), added, 1e-6, 1e-6));
  o.std_structure = -0.1;
  EXPECT_THROW(sample_volume(m, vol, o), ValueError);
  EXPECT_THROW(posterior_band(plain.mean, plain.samples, g, "wedge_band", 1.5, -0.1), ValueError);
}

// conformal_level_multipliers against sorting the ratios by hand; the std pool of one tile
// against the per-voxel variance averaged by eval's gaussian_average.
TEST(CalibrateSpread, LevelMultipliersAreConformalQuantilesAndThePoolAveragesTheVariance) {
  torch::manual_seed(12);
  at::Tensor sd = 0.2 + torch::rand({3, 5, 7}, torch::kDouble);
  at::Tensor mean = torch::randn_like(sd), truth = mean + sd * torch::randn_like(sd) * 1.3;
  const std::vector<double> levels{0.5, 0.8, 0.9, 0.95};
  const std::vector<double> q = conformal_level_multipliers(truth, mean, sd, levels);
  std::vector<double> r;
  for (int64_t v = 0; v < sd.numel(); ++v) {
    r.push_back(std::abs(truth.view({-1})[v].item<double>() - mean.view({-1})[v].item<double>()) /
                sd.view({-1})[v].item<double>());
  }
  std::sort(r.begin(), r.end());
  for (size_t k = 0; k < levels.size(); ++k) {
    const size_t idx = std::min(r.size(), size_t(std::ceil(levels[k] * double(r.size() + 1)))) - 1;
    EXPECT_DOUBLE_EQ(q[k], r[idx]);
    EXPECT_GE(((truth - mean).abs() <= q[k] * sd).to(torch::kDouble).mean().item<double>(), levels[k]);
  }
  EXPECT_THROW(conformal_level_multipliers(truth, mean, sd, {1.0}), ValueError);

  ZeroSpecimenPosterior method(0.5);
  SampleOptions o = small_opts(12, 0, 8);
  at::Tensor vol = torch::randn({12, 12, 12});
  const SampleVolumes plain = sample_volume(method, vol, o);
  o.std_pool = 1.5;
  const SampleVolumes pooled = sample_volume(method, vol, o);
  EXPECT_TRUE(torch::equal(pooled.mean, plain.mean));
  const at::Tensor want = gaussian_average(plain.std.to(torch::kDouble).square(), 1.5).sqrt();
  EXPECT_TRUE(torch::allclose(pooled.std.to(torch::kDouble), want, 1e-5, 1e-6));
  // The draws' true spread is 0.5 everywhere: pooled, the std is nearer it.
  EXPECT_LT((pooled.std - 0.5).abs().mean().item<double>(), 0.5 * (plain.std - 0.5).abs().mean().item<double>());
  o.std_pool = -1;
  EXPECT_THROW(sample_volume(method, vol, o), ValueError);
}

// The std's factor: errors twice the stated std give s = 2; on a small set the gap it reaches is
// the exact minimax gap (brute force over every breakpoint of the piecewise-constant coverages,
// within one voxel); Laplace errors (heavier tails) are matched over all levels better than by
// the factor exact at 90 % alone.
TEST(CalibrateSpread, StdFactorIsNearestTheReliabilityDiagonal) {
  torch::manual_seed(8);
  const std::vector<double> levels{0.5, 0.8, 0.9, 0.95};
  auto gap = [&](const at::Tensor& t, const at::Tensor& m, const at::Tensor& sd, double s) {
    double g = 0;
    for (double p : levels) {
      const double z = sample_interval_z(p);
      const double c = ((t - m).abs() <= z * s * sd).to(torch::kDouble).mean().item<double>();
      g = std::max(g, std::abs(c - p));
    }
    return g;
  };
  at::Tensor sd = 0.1 + torch::rand({40, 40, 40}, torch::kDouble);
  at::Tensor mean = torch::randn_like(sd);
  at::Tensor truth = mean + 2.0 * sd * torch::randn_like(sd);
  EXPECT_NEAR(gaussian_reliability_scale(truth, mean, sd), 2.0, 0.06);

  at::Tensor sd2 = 0.1 + torch::rand({1, 10, 20}, torch::kDouble);
  at::Tensor m2 = torch::zeros_like(sd2);
  at::Tensor t2 = sd2 * torch::randn_like(sd2) * (1 + torch::rand_like(sd2));
  const double s2 = gaussian_reliability_scale(t2, m2, sd2);
  double exact = 1.0;
  const at::Tensor ratio = ((t2 - m2).abs() / sd2).reshape({-1});
  for (int64_t v = 0; v < ratio.numel(); ++v) {
    for (double p : levels) {
      const double b = ratio[v].item<double>() / sample_interval_z(p);
      for (double s : {b * (1 - 1e-9), b, b * (1 + 1e-9)}) exact = std::min(exact, gap(t2, m2, sd2, s));
    }
  }
  EXPECT_LE(gap(t2, m2, sd2, s2), exact + 1.0 / 200 + 1e-12);

  at::Tensor u = torch::rand_like(sd) - 0.5;  // Laplace(0, 1) by the inverse CDF
  at::Tensor lap = -u.sign() * (1 - 2 * u.abs()).log();
  at::Tensor t3 = mean + sd * lap;
  const double s90 = ((t3 - mean).abs() / sd).reshape({-1}).quantile(0.9).item<double>() /
                     sample_interval_z(0.9);
  const double s3 = gaussian_reliability_scale(t3, mean, sd);
  EXPECT_LT(gap(t3, mean, sd, s3), gap(t3, mean, sd, s90) - 0.02);
  EXPECT_THROW(gaussian_reliability_scale(mean, mean, sd), ValueError);  // no error to scale
  EXPECT_THROW(gaussian_reliability_scale(truth, mean, sd, {1.0}), ValueError);
  EXPECT_THROW(gaussian_reliability_scale(truth, mean, sd.narrow(0, 0, 2)), ShapeError);
}

TEST(CalibrateSpread, ItsFactorCoversThePseudoProblemAndSampleAppliesIt) {
  NotPosterior identity;  // G = identity: the bootstrap's spread is the added noise's
  torch::manual_seed(5);
  at::Tensor vol = torch::randn({16, 16, 16});
  SampleOptions o = small_opts(16, 0, 6);
  o.posterior.uq = "bootstrap";
  o.interval = 0.8;
  const SpreadCalibration c = calibrate_spread(identity, vol, o);
  EXPECT_EQ(c.side, 16);
  EXPECT_GT(c.bounds_scale, 0.0);
  EXPECT_GE(c.coverage_after, 0.8);
  EXPECT_GT(c.noise_variance, 0.0);
  // With G the identity the pseudo-problem's error is the added noise, which is also what the
  // bootstrap's draws spread by: both factors are about 1.
  EXPECT_NEAR(c.bounds_scale, 1.0, 0.35);
  EXPECT_NEAR(c.std_scale, 1.0, 0.35);
  // The std's factor brings the pseudo-problem's reliability diagram nearest the diagonal.
  ASSERT_EQ(c.reliability_after.size(), 4u);
  double gap_before = 0, gap_after = 0;
  for (size_t k = 0; k < 4; ++k) {
    gap_before = std::max(gap_before, std::abs(c.reliability_before[k] - c.levels[k]));
    gap_after = std::max(gap_after, std::abs(c.reliability_after[k] - c.levels[k]));
  }
  EXPECT_LE(gap_after, gap_before);
  // Same seed, same factors.
  const SpreadCalibration again = calibrate_spread(identity, vol, o);
  EXPECT_DOUBLE_EQ(again.bounds_scale, c.bounds_scale);
  EXPECT_DOUBLE_EQ(again.std_scale, c.std_scale);
  // One factor multiplies the std, the other the bounds' distances from the (unchanged) mean.
  SampleVolumes plain = sample_volume(identity, vol, o);
  o.std_scale = 1.5;
  o.bounds_scale = 0.7;
  SampleVolumes scaled = sample_volume(identity, vol, o);
  EXPECT_TRUE(torch::allclose(scaled.mean, plain.mean, 0, 0));
  EXPECT_TRUE(torch::allclose(scaled.std, plain.std * 1.5, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(plain.mean - scaled.lower, (plain.mean - plain.lower) * 0.7, 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(scaled.upper - plain.mean, (plain.upper - plain.mean) * 0.7, 1e-4, 1e-5));
  o.bounds = "gaussian";
  SampleVolumes gauss = sample_volume(identity, vol, o);
  const double z = sample_interval_z(o.interval);
  EXPECT_TRUE(torch::allclose(gauss.upper - gauss.mean, z * 0.7 * plain.std, 1e-4, 1e-5));
  o.bounds = "quantile";
  // With the other half, the pseudo-problem's noise is (even − odd)/√2: halves with independent
  // white noise of the cube's level give the same kind of factor, about 1.
  torch::manual_seed(6);
  at::Tensor signal = 0.3 * torch::randn({16, 16, 16});
  at::Tensor even = signal + torch::randn({16, 16, 16}), odd = signal + torch::randn({16, 16, 16});
  const SpreadCalibration h = calibrate_spread(identity, even, o, odd);
  EXPECT_EQ(h.noise, "halves");
  EXPECT_EQ(c.noise, "highfreq");
  EXPECT_NEAR(h.bounds_scale, 1.0, 0.35);
  EXPECT_NEAR(h.std_scale, 1.0, 0.35);
  EXPECT_THROW(calibrate_spread(identity, even, o, odd.narrow(0, 0, 8)), ShapeError);
  o.std_scale = 0;
  EXPECT_THROW(sample_volume(identity, vol, o), ValueError);
  o.std_scale = 1;
  o.bounds_scale = std::nan("");
  EXPECT_THROW(sample_volume(identity, vol, o), ValueError);
  EXPECT_THROW(calibrate_spread(identity, torch::randn({16, 16, 8}), o), ValueError);
}

// The calibration's cubes: as many as cover each axis (a brute-force count of covered voxels),
// fewer along the longest when capped, one centred; refused when the cube does not fit.
TEST(CalibrateSpread, CubeCornersCoverTheVolumeUpToTheirCap) {
  const std::array<int64_t, 3> shape{20, 50, 37};
  const int64_t side = 16;
  const auto all = calibration_cube_corners(shape, side, 1000);
  EXPECT_EQ(all.size(), size_t(2 * 4 * 3));
  at::Tensor hit = torch::zeros({shape[0], shape[1], shape[2]}, torch::kInt);
  for (const auto& [z, y, x] : all) {
    for (int64_t a = 0; a < 3; ++a) {
      const int64_t c = a == 0 ? z : a == 1 ? y : x;
      EXPECT_GE(c, 0);
      EXPECT_LE(c + side, shape[size_t(a)]);
    }
    hit.narrow(0, z, side).narrow(1, y, side).narrow(2, x, side) += 1;
  }
  EXPECT_EQ((hit == 0).sum().item<int64_t>(), 0);  // every voxel in some cube
  // Capped at 8: 2 x 4 x 3 -> 2 x 3 x 3 -> 2 x 2 x 3 -> 2 x 2 x 2, the first and last flush.
  const auto capped = calibration_cube_corners(shape, side, 8);
  ASSERT_EQ(capped.size(), 8u);
  EXPECT_EQ(capped.front(), (std::array<int64_t, 3>{0, 0, 0}));
  EXPECT_EQ(capped.back(), (std::array<int64_t, 3>{4, 34, 21}));
  const auto one = calibration_cube_corners(shape, side, 1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0], (std::array<int64_t, 3>{2, 17, 10}));  // centred, as the single cube was
  EXPECT_THROW(calibration_cube_corners(shape, 21, 4), ValueError);
  EXPECT_THROW(calibration_cube_corners(shape, side, 0), ValueError);
}

// Pooling cubes: the zero-specimen model (above) on two cubes whose noise differs by 2× needs
// factors that differ about 2×; pooled, the factor lies strictly between the two cubes' own,
// and each cube keeps the rotation it gets alone.
TEST(CalibrateSpread, CubesArePooledVoxelByVoxel) {
  const int64_t s = 16, n = 16;
  ZeroSpecimenPosterior method(0.25);
  SampleOptions o = small_opts(s, 0, n);
  o.wedge.tilt_min_deg = -60;
  o.wedge.tilt_max_deg = 60;
  torch::manual_seed(52);
  const at::Tensor e1 = torch::randn({s, s, s}), o1 = torch::randn({s, s, s});
  const at::Tensor e2 = 2 * torch::randn({s, s, s}), o2 = 2 * torch::randn({s, s, s});
  const SpreadCalibration c1 = calibrate_spread(method, e1, o, o1);
  const SpreadCalibration both = calibrate_spread(method, {e1, e2}, o, {o1, o2});
  SampleOptions o_second = o;  // cube 2 alone, with the seed it gets as the second cube
  o_second.posterior.seed = ((o.posterior.seed ^ 0x5eed'ca1bULL) + 1) ^ 0x5eed'ca1bULL;
  const SpreadCalibration c2 = calibrate_spread(method, e2, o_second, o2);
  EXPECT_EQ(both.cubes, 2);
  EXPECT_GT(c2.std_scale, 1.6 * c1.std_scale);
  EXPECT_GT(both.std_scale, c1.std_scale);
  EXPECT_LT(both.std_scale, c2.std_scale);
  EXPECT_EQ(both.rotation, c1.rotation + ", " + c2.rotation);
  EXPECT_THROW(calibrate_spread(method, {e1, e2}, o, {o1}), ShapeError);
  const at::Tensor small = e2.narrow(0, 0, 8).narrow(1, 0, 8).narrow(2, 0, 8);
  EXPECT_THROW(calibrate_spread(method, {e1, small}, o), ShapeError);  // cubes of two edges
}
