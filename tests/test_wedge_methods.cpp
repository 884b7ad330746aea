// Missing-wedge methods: the DDW band-split loss (sum of its terms, Parseval), the data term,
// noise level from halves, crop sizes, the proxy degradation T_M∘R against exact cube rotations,
// wedge refill, matched noise, network snapshots, and each of isonet, ddw, cryogen-map,
// cryogen-ot training a few steps and restoring from its checkpoint.
// T_M idempotence/self-adjointness and rotated masks are tested in test_ops (not repeated).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "unwedge/core/error.h"
#include "unwedge/methods/cryogen_common.h"
#include "unwedge/methods/method.h"
#include "unwedge/methods/ot.h"
#include "unwedge/methods/wedge_common.h"
#include "unwedge/ops/fourier.h"
#include "unwedge/ops/rotate.h"
#include "unwedge/ops/wedge.h"

using namespace unwedge;

namespace {

const std::vector<int64_t> kDims{-3, -2, -1};

// Real-space mean of the band-passed error through the FULL complex FFT (independent of the
// half-grid bookkeeping): mean((F⁻¹[W F e])²), W the half-grid weight expanded to the full grid.
double full_grid_band_mean(const torch::Tensor& e, const torch::Tensor& w_half) {
  auto w = fourier_half_to_full(w_half, e.size(-1));
  auto s = torch::fft::fftn(e.to(torch::kDouble), c10::nullopt, kDims, "ortho");
  auto back = torch::fft::ifftn(s * w.to(torch::kDouble), c10::nullopt, kDims, "ortho");
  return torch::real(back).square().mean().item<double>();
}

}  // namespace

TEST(WedgeCommon, DdwLossIsSumOfBandsAndParseval) {
  torch::manual_seed(11);
  const int64_t n = 12;
  auto pred = torch::randn({2, 1, n, n, n});
  auto target = torch::randn({2, 1, n, n, n});
  WedgeGeometry g{-50, 65, false};
  auto m = wedge_mask_rfft({n, n, n}, g, torch::kCPU).view({1, 1, n, n, n / 2 + 1});
  auto R = random_rotations(2, at::detail::getDefaultCPUGenerator(), torch::kCPU);
  auto m_rot = wedge_mask_rfft_rotated({n, n, n}, g, R).unsqueeze(1);  // [2, 1, n, n, n/2+1]
  const double lambda = 2.0;
  auto t = ddw_loss(pred, target, m_rot, m, lambda);
  const double both = t.both.item<double>(), wedge = t.wedge.item<double>();
  EXPECT_NEAR(t.total.item<double>(), both + lambda * wedge, 1e-6 * (both + wedge));
  // Parseval, per sample (each has its own M_R), averaged over the batch: rel. 1e-5 (float32).
  auto e = pred - target;
  double ref_both = 0, ref_wedge = 0;
  for (int64_t i = 0; i < 2; ++i) {
    ref_both += full_grid_band_mean(e[i], (m_rot[i] * m[0])) / 2;
    ref_wedge += full_grid_band_mean(e[i], (m_rot[i] * (1 - m[0]))) / 2;
  }
  EXPECT_NEAR(both, ref_both, 1e-5 * ref_both);
  EXPECT_NEAR(wedge, ref_wedge, 1e-5 * ref_wedge);
  EXPECT_GT(wedge, 0.01);  // the rotated wedge really has a band the input never saw
  // Odd X (no Nyquist column) too.
  auto eo = torch::randn({1, 1, 6, 8, 7});
  auto mo = wedge_mask_rfft({6, 8, 7}, g, torch::kCPU).view({1, 1, 6, 8, 4});
  const double d = wedge_data_term(eo, torch::zeros_like(eo), mo, {}).item<double>();
  EXPECT_NEAR(d, full_grid_band_mean(eo[0], mo[0]), 1e-5 * d);
}

TEST(WedgeCommon, NoiseVarianceCropAndRotationCrop) {
  torch::manual_seed(12);
  auto x = torch::randn({2, 1, 16, 16, 16});
  auto even = x + 0.5 * torch::randn_like(x), odd = x + 0.5 * torch::randn_like(x);
  auto v = noise_variance_from_halves(even, odd);
  ASSERT_EQ(v.numel(), 2);
  // var(e - o)/2 = 0.25; 4096 voxels: std of the estimate ~ 0.25·sqrt(2/4096) = 0.0055; tol 0.03.
  EXPECT_NEAR(v[0].item<double>(), 0.25, 0.03);
  EXPECT_NEAR(v[1].item<double>(), 0.25, 0.03);
  EXPECT_EQ(rotation_crop_size({32, 32, 32}, 8), 16);   // floor(32/√2) = 22 -> 16
  EXPECT_EQ(rotation_crop_size({46, 46, 46}, 8), 32);   // floor(46/√2) = 32
  EXPECT_EQ(rotation_crop_size({45, 45, 45}, 1), 31);
  EXPECT_THROW(rotation_crop_size({10, 10, 10}, 8), ShapeError);
  auto c = center_crop3(torch::arange(5 * 5 * 5).view({5, 5, 5}), {3, 3, 3});
  EXPECT_EQ(c[0][0][0].item<int64_t>(), 1 * 25 + 1 * 5 + 1);
}

TEST(WedgeCommon, ProxyDegradeMatchesExactCubeRotation) {
  // A 90° rotation about Y sends grid points to grid points: the trilinear rotation must equal
  // the exact cube rotation, and T_M of it equals wedge_apply of the exact one (tol 1e-4).
  torch::manual_seed(13);
  const int64_t n = 12;
  auto x = torch::randn({1, 1, n, n, n});
  auto R = rotation_about("y", 90).to(torch::kFloat).unsqueeze(0);  // [1, 3, 3]
  auto cube = cube_from_matrix(R[0].to(torch::kDouble));
  auto m = wedge_mask_rfft({8, 8, 8}, WedgeGeometry{}, torch::kCPU).view({1, 1, 8, 8, 5});
  auto [rx, y] = wedge_proxy_degrade(x, R, 8, m);
  auto ref = center_crop3(cube_rotate(x, cube), {8, 8, 8});
  EXPECT_LT((rx - ref).abs().max().item<double>(), 1e-4);
  EXPECT_LT((y - wedge_apply(ref, m)).abs().max().item<double>(), 1e-4);
}

TEST(WedgeCommon, RefillAndMatchedNoise) {
  torch::manual_seed(14);
  const int64_t n = 16;
  auto y = torch::randn({2, 1, n, n, n}), f = torch::randn({2, 1, n, n, n});
  auto m = wedge_mask_rfft({n, n, n}, WedgeGeometry{-45, 45, false}, torch::kCPU)
               .view({1, 1, n, n, n / 2 + 1});
  auto r = wedge_refill(y, f, m);
  EXPECT_LT((wedge_apply(r, m) - wedge_apply(y, m)).abs().max().item<double>(), 1e-4);
  EXPECT_LT(((r - wedge_apply(r, m)) - (f - wedge_apply(f, m))).abs().max().item<double>(), 1e-4);

  auto big = torch::zeros({2, 1, 32, 32, 32});
  auto mb = wedge_mask_rfft({32, 32, 32}, WedgeGeometry{}, torch::kCPU).view({1, 1, 32, 32, 17});
  auto noise = wedge_matched_noise(big, mb, torch::tensor({0.5f, 2.0f}));
  // Per-voxel variance = sigma2 (32768 correlated voxels: tolerance 5 %).
  EXPECT_NEAR(noise[0].var().item<double>(), 0.5, 0.025);
  EXPECT_NEAR(noise[1].var().item<double>(), 2.0, 0.1);
  EXPECT_LT((wedge_apply(noise, mb) - noise).abs().max().item<double>(), 1e-4);  // lives in M
}

// halves_fsc_sums against the same sums over the FULL complex FFT grid (no half-grid
// multiplicity), shell by shell; and on halves whose common signal lives below 0.1 cycles/voxel
// (noise elsewhere) the FSC 0.5 crossing lies at that band's edge.
TEST(WedgeCommon, HalvesFscSumsMatchTheFullGridAndFindTheSignalsEdge) {
  torch::manual_seed(16);
  const int64_t n = 16;
  auto a = torch::randn({2, 1, n, n, n}), b = a + torch::randn({2, 1, n, n, n});
  auto m = wedge_mask_rfft({n, n, n}, WedgeGeometry{-50, 65, false}, torch::kCPU).view({1, 1, n, n, n / 2 + 1});
  auto sums = halves_fsc_sums(a, b, m);
  ASSERT_EQ(sums.size(0), 3);
  ASSERT_EQ(sums.size(1), n / 2 + 1);
  auto fa = torch::fft::fftn(a.to(torch::kDouble), c10::nullopt, kDims, "ortho");
  auto fb = torch::fft::fftn(b.to(torch::kDouble), c10::nullopt, kDims, "ortho");
  auto mf = fourier_half_to_full(m.to(torch::kDouble), n).expand_as(torch::real(fa));
  auto f = torch::fft::fftfreq(n, torch::kDouble);
  auto r = (f.view({-1, 1, 1}).square() + f.view({1, -1, 1}).square() + f.view({1, 1, -1}).square()).sqrt();
  auto shell = torch::round(r * n).expand_as(mf);
  for (int64_t i = 0; i <= n / 2; ++i) {
    auto in = mf * (shell == static_cast<double>(i)).to(torch::kDouble);
    const double num = (in * torch::real(fa * torch::conj(fb))).sum().item<double>();
    const double pa = (in * torch::abs(fa).square()).sum().item<double>();
    EXPECT_NEAR(sums[0][i].item<double>(), num, 1e-6 * (1 + std::abs(pa))) << "shell " << i;
    EXPECT_NEAR(sums[1][i].item<double>(), pa, 1e-6 * (1 + pa)) << "shell " << i;
  }
  // Signal below 0.1 cycles/voxel (amplitude 10), independent unit noise on each half.
  const int64_t p = 32;
  auto sig = lowpass_cosine(10.0 * torch::randn({4, 1, p, p, p}), 0.1, 0.02);
  auto mp = wedge_mask_rfft({p, p, p}, WedgeGeometry{}, torch::kCPU).view({1, 1, p, p, p / 2 + 1});
  auto s2 = halves_fsc_sums(sig + torch::randn_like(sig), sig + torch::randn_like(sig), mp);
  const double x = halves_fsc_crossing(s2, p, 0.5, -1.0);
  EXPECT_GT(x, 0.08);
  EXPECT_LT(x, 0.13);
  // Identical halves never cross: the fallback.
  EXPECT_EQ(halves_fsc_crossing(halves_fsc_sums(sig, sig, mp), p, 0.5, 0.2), 0.2);
  // Shell i lies at i/P, also for an odd edge: FSC 1 up to shell 10 and 0 from 11 on crosses
  // 0.5 half-way, at 10.5/33 cycles/voxel for P = 33 (17 shells).
  auto steps = torch::ones({3, 33 / 2 + 1}, torch::kDouble);
  steps[0].narrow(0, 11, 6).zero_();
  EXPECT_NEAR(halves_fsc_crossing(steps, 33, 0.5, -1.0), 10.5 / 33, 1e-12);
  EXPECT_THROW(halves_fsc_sums(a, b.narrow(2, 0, 8), m), ShapeError);
}

// lowpass_cosine: plane waves below the edge pass unchanged, one at the cutoff keeps half its
// amplitude, one above the edge (period 4 along Z: the encoder's stride) is removed.
TEST(WedgeCommon, CosineLowPassOnPlaneWaves) {
  const int64_t n = 16;
  auto z = torch::arange(n, torch::kDouble).view({n, 1, 1}).expand({n, n, n});
  auto wave = [&](double k) { return torch::cos(2 * M_PI * k * z).view({1, 1, n, n, n}).to(torch::kFloat); };
  const double cutoff = 3.0 / 16, width = 0.05;
  EXPECT_LT((lowpass_cosine(wave(1.0 / 16), cutoff, width) - wave(1.0 / 16)).abs().max().item<double>(), 1e-5);
  EXPECT_LT((lowpass_cosine(wave(3.0 / 16), cutoff, width) - 0.5 * wave(3.0 / 16)).abs().max().item<double>(), 1e-5);
  EXPECT_LT(lowpass_cosine(wave(0.25), cutoff, width).abs().max().item<double>(), 1e-5);
  EXPECT_THROW(lowpass_cosine(wave(0.25), 0.0, width), ValueError);
}

TEST(WedgeCommon, SnapshotRefreshesOnlyOnNewBucket) {
  torch::manual_seed(15);
  UNet3d net(UNet3dOptions().depth(1).base_channels(2));
  NetSnapshot snap;
  auto x = torch::randn({1, 1, 8, 8, 8});
  snap.refresh(net, /*step=*/10, /*every=*/10);
  auto before = snap.run(x);
  {
    torch::NoGradGuard ng;
    for (auto& p : net->parameters()) p.add_(0.1);
  }
  snap.refresh(net, 19, 10);  // same bucket: unchanged
  EXPECT_TRUE(torch::equal(snap.run(x), before));
  snap.refresh(net, 20, 10);  // new bucket: the current network
  net->eval();
  torch::NoGradGuard ng;
  EXPECT_LT((snap.run(x) - net->forward(x)).abs().max().item<double>(), 1e-6);
  EXPECT_GT((snap.run(x) - before).abs().max().item<double>(), 1e-4);
}

namespace {

struct MethodCase {
  std::string name;
  nlohmann::json options;
};

class WedgeMethodTrain : public ::testing::TestWithParam<MethodCase> {};

}  // namespace

TEST_P(WedgeMethodTrain, TrainsAFewStepsAndRestoresFromCheckpoint) {
  torch::set_num_threads(1);
  torch::manual_seed(21);
  const auto& c = GetParam();
  nlohmann::json opts = c.options;
  opts["depth"] = 2;
  opts["base_channels"] = 4;
  auto m = method_create(c.name, opts);
  ASSERT_EQ(m->name(), c.name);
  const int64_t p = 16, b = 2;
  auto x = torch::randn({b, 1, p, p, p}).cumsum(2) / 4.0;  // some structure along Z
  // Per-sample tilt ranges, one asymmetric with the sign flag.
  std::vector<MethodWedge> wedges{{-60, 60, false}, {-50, 65, true}};
  torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(1e-3));
  auto w0 = m->parameters()[0].detach().clone();
  for (int64_t step = 0; step < 3; ++step) {
    Batch batch;
    batch.input = x + 0.3 * torch::randn_like(x);
    if (m->needs_halves()) batch.target = x + 0.3 * torch::randn_like(x);
    batch.wedge = wedges;
    batch.step = step;
    opt.zero_grad();
    auto l = m->loss(batch);
    ASSERT_EQ(l.numel(), 1);
    ASSERT_TRUE(std::isfinite(l.item<double>())) << c.name << " step " << step;
    l.backward();
    opt.step();
  }
  EXPECT_GT((m->parameters()[0] - w0).abs().max().item<double>(), 0.0);

  std::stringstream ss;
  {
    torch::serialize::OutputArchive ar;
    m->save(ar);
    ar.save_to(ss);
  }
  auto m2 = method_create(c.name, m->options_json());
  torch::serialize::InputArchive in;
  in.load_from(ss);
  m2->load(in);
  m->train(false);
  m2->train(false);
  auto probe = torch::randn({1, 1, 12, 16, 20});  // not a size multiple: padded and cropped
  auto r1 = m->restore(probe), r2 = m2->restore(probe);
  EXPECT_EQ(r1.sizes(), probe.sizes());
  EXPECT_LT((r1 - r2).abs().max().item<double>(), 1e-6) << c.name;
  // Wrong number of wedge geometries is refused with the counts.
  Batch bad;
  bad.input = x;
  if (m->needs_halves()) bad.target = x;
  bad.wedge = {MethodWedge{}, MethodWedge{}, MethodWedge{}};
  EXPECT_THROW(m->loss(bad), ShapeError);
}

INSTANTIATE_TEST_SUITE_P(
    Methods, WedgeMethodTrain,
    ::testing::Values(
        MethodCase{"isonet", {{"refill_every", 2}, {"noise_level", 0.1}}},
        MethodCase{"isonet", {{"random_rotations", true}, {"refill_every", 0}}},
        MethodCase{"ddw", {{"refill_every", 2}}},
        MethodCase{"ddw", {{"rotations", "haar"}, {"refill_every", 2}}},
        MethodCase{"ei", nlohmann::json::object()},
        MethodCase{"ei", {{"rotations", "haar"}}},
        MethodCase{"ei", {{"pad", true}, {"rotations", "haar"}}},
        MethodCase{"cryogen-map", {{"prior_start", 0}}},
        MethodCase{"cryogen-map", {{"prior_start", 0}, {"rotations", "mix"}, {"proxy_noise", "white"},
                                   {"symmetric", false}, {"detach", true}}},
        MethodCase{"cryogen-ot", {{"prior_start", 0}}},
        MethodCase{"cryogen-ot", {{"prior_start", 0}, {"symmetric", false}, {"detach", true},
                                  {"ddw_weight", 1.0}}},
        MethodCase{"cryogen-ot", {{"prior_start", 2}, {"encoder_start", 0}, {"pad", true},
                                  {"loss_window", 0.5}}},
        MethodCase{"cryogen-ot", {{"prior_start", 0}, {"ot", "sinkhorn"}, {"features", "voxels"},
                                  {"ot_points", 64}, {"rotations", "haar"}}}),
    [](const ::testing::TestParamInfo<MethodCase>& info) {
      std::string s = info.param.name + "_" + std::to_string(info.index);
      for (auto& ch : s) if (ch == '-') ch = '_';
      return s;
    });

// Two halves of a smooth random volume [2, 1, 16, 16, 16] (cumulative sum along Z) with noise
// 0.3, tilt range ±60°, drawn from `seed`.
namespace {
Batch smooth_halves_batch(uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn({2, 1, 16, 16, 16}).cumsum(2) / 4.0;
  Batch b;
  b.input = x + 0.3 * torch::randn_like(x);
  b.target = x + 0.3 * torch::randn_like(x);
  b.wedge = {MethodWedge{-60, 60, false}};
  return b;
}
}  // namespace

// loss() is a pure function: it moves no weight of any network (main or auxiliary) and, with
// the same seed, gives the same value twice; aux_step() trains the auxiliary network only, and
// only once the prior is on (prior_start; cryogen-ot's autoencoder with encoder_start = -1).
TEST(WedgeMethods, LossMovesNoWeightAndAuxStepTrainsOnlyTheAuxiliaryNetwork) {
  torch::set_num_threads(1);
  for (const std::string name : {"cryogen-map", "cryogen-ot"}) {
    nlohmann::json opts{{"depth", 2}, {"base_channels", 4}, {"prior_start", 1}};
    if (name == "cryogen-ot") opts["encoder_start"] = -1;
    auto m = method_create(name, opts);
    ASSERT_EQ(m->aux_optimizers().size(), 1u) << name;
    auto aux = [&] { return optimizer_parameters(*m->aux_optimizers()[0]); };
    auto copy = [](const std::vector<torch::Tensor>& ts) {
      std::vector<torch::Tensor> out;
      for (const auto& t : ts) out.push_back(t.detach().clone());
      return out;
    };
    auto max_change = [](const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
      double d = 0;
      for (size_t i = 0; i < a.size(); ++i) d = std::max(d, (a[i] - b[i]).abs().max().item<double>());
      return d;
    };
    Batch b = smooth_halves_batch(3);
    const auto main0 = copy(m->parameters()), aux0 = copy(aux());
    b.step = 0;  // before prior_start: the auxiliary network rests
    m->aux_step(b, StepContext{});
    EXPECT_EQ(max_change(aux0, aux()), 0.0) << name << ": aux_step() before prior_start";
    b.step = 1;
    torch::manual_seed(4);
    const double l1 = m->loss(b).item<double>();
    torch::manual_seed(4);
    const double l2 = m->loss(b).item<double>();
    EXPECT_EQ(l1, l2) << name << ": loss() changed state between two calls";
    EXPECT_EQ(max_change(main0, m->parameters()), 0.0) << name;
    EXPECT_EQ(max_change(aux0, aux()), 0.0) << name << ": loss() stepped the auxiliary network";
    m->aux_step(b, StepContext{});
    EXPECT_EQ(max_change(main0, m->parameters()), 0.0) << name << ": aux_step() moved G";
    EXPECT_GT(max_change(aux0, aux()), 0.0) << name << ": aux_step() left the auxiliary network";
  }
}

// cryogen-ot's autoencoder warms up from encoder_start (default 0), before the prior starts, so
// that its features are learnt when the prior acts; not at all when the prior is off.
TEST(WedgeMethods, CryogenOtAutoencoderWarmsUpBeforeThePrior) {
  torch::set_num_threads(1);
  auto encoder_moves = [](nlohmann::json opts, int64_t step) {
    opts["depth"] = 2;
    opts["base_channels"] = 4;
    auto m = method_create("cryogen-ot", opts);
    if (m->aux_optimizers().empty()) return false;  // voxel features: no autoencoder
    std::vector<torch::Tensor> before;
    for (const auto& t : optimizer_parameters(*m->aux_optimizers()[0])) before.push_back(t.detach().clone());
    Batch b = smooth_halves_batch(5);
    b.step = step;
    m->aux_step(b, StepContext{});
    double d = 0;
    auto after = optimizer_parameters(*m->aux_optimizers()[0]);
    for (size_t i = 0; i < after.size(); ++i) d = std::max(d, (after[i] - before[i]).abs().max().item<double>());
    return d > 0;
  };
  EXPECT_EQ(method_create("cryogen-ot", nlohmann::json::object())->options_json().at("encoder_start"), 0);
  EXPECT_TRUE(encoder_moves({{"prior_start", 50}}, 0));                          // the default
  EXPECT_FALSE(encoder_moves({{"prior_start", 50}, {"encoder_start", 10}}, 5));  // not yet
  EXPECT_TRUE(encoder_moves({{"prior_start", 50}, {"encoder_start", 10}}, 10));
  EXPECT_FALSE(encoder_moves({{"prior_start", 50}, {"encoder_start", -1}}, 0));  // with the prior
  EXPECT_FALSE(encoder_moves({{"prior_share", 0.0}}, 0));                        // no prior
  EXPECT_FALSE(encoder_moves({{"features", "voxels"}}, 0));                      // no autoencoder
}

// prior_every = k (lazy prior): the prior is computed on steps prior_start, prior_start + k, ...
// only, with k times the adaptive weight of the same step computed eagerly (same weights, same
// draws); the steps between carry the core alone.
TEST(WedgeMethods, LazyPriorEveryKthStepWithKTimesTheWeight) {
  torch::set_num_threads(1);
  auto make = [](int64_t every) {
    torch::manual_seed(11);
    return method_create("cryogen-ot", {{"depth", 2}, {"base_channels", 4}, {"prior_start", 2},
                                        {"prior_every", every}, {"ot_points", 64}});
  };
  auto eager = make(1), lazy = make(3);
  Batch b = smooth_halves_batch(5);
  auto stat = [](const Method& m, const std::string& key) {
    for (const auto& [k, v] : m.step_stats()) {
      if (k == key) return v;
    }
    return -1.0;
  };
  for (int64_t step : {1, 2, 3, 4, 5}) {
    b.step = step;
    torch::manual_seed(100 + step);
    const double le = eager->loss(b).item<double>();
    torch::manual_seed(100 + step);
    const double ll = lazy->loss(b).item<double>();
    const double we = stat(*eager, "ot_weight"), wl = stat(*lazy, "ot_weight");
    if (step < 2) {
      EXPECT_EQ(we, -1.0) << "step " << step << ": prior before prior_start";
      EXPECT_EQ(ll, le) << "step " << step;
    } else if (step == 2 || step == 5) {
      ASSERT_GT(we, 0.0) << "step " << step;
      EXPECT_NEAR(wl, 3.0 * we, 1e-9 * we) << "step " << step;
      const double core = le - we * stat(*eager, "ot");
      EXPECT_NEAR(ll, core + wl * stat(*lazy, "ot"), 1e-6 * std::abs(ll)) << "step " << step;
    } else {
      EXPECT_GT(we, 0.0) << "step " << step;
      EXPECT_EQ(wl, -1.0) << "step " << step << ": the lazy prior ran between its steps";
      EXPECT_NEAR(ll, le - we * stat(*eager, "ot"), 1e-6 * std::abs(ll)) << "step " << step;
    }
  }
  EXPECT_THROW(method_create("cryogen-map", {{"prior_every", 0}}), ValueError);
}

namespace {
// The proxy core with its set-up exposed, to look at the noise it draws.
class ProxyProbe : public ProxyCoreBase {
 public:
  using ProxyCoreBase::ProxyCoreBase;
  using ProxyCoreBase::proxy_setup;
  std::string name() const override { return "probe"; }
  torch::Tensor loss(const Batch&) override { return {}; }
};
}  // namespace

// The proxy term's noise follows proxy_noise; a prior's pseudo-observations carry the data's
// noise either way: with proxy_noise = none the proxy input gets none and the priors get another
// sample's (y_a − y_b)/√2 (computed here directly); with halves both get it.
TEST(WedgeMethods, PriorPseudoObservationsAreNoisyEvenWithoutProxyNoise) {
  Batch b = smooth_halves_batch(9);
  auto roll_halves = torch::roll((b.input - b.target) / std::sqrt(2.0), {1}, {0});
  for (const char* noise : {"none", "halves"}) {
    auto opts = method_create("cryogen-ot", {{"depth", 2}, {"base_channels", 4}, {"proxy_noise", noise}})
                    ->options_json();
    ProxyProbe probe(opts);
    auto st = probe.proxy_setup(b);
    ASSERT_EQ(st.crop, 16) << noise;
    EXPECT_TRUE(torch::allclose(st.prior_noise, roll_halves, 1e-6, 1e-6)) << noise;
    if (std::string(noise) == "none") {
      EXPECT_EQ(st.noise.abs().max().item<double>(), 0.0);
    } else {
      EXPECT_TRUE(torch::allclose(st.noise, roll_halves, 1e-6, 1e-6));
    }
  }
}

// One tomogram (input = one, what train sets when given --in): the batch holds no target and
// the tomogram is both halves. The loss equals the halves path's on a batch whose two halves are
// that tomogram (same weights, same draws), the "halves" noise is zero, the model says it needs
// no halves; a halves model given no target, and an unknown input, are refused.
TEST(ProxyCore, OneTomogramIsBothHalves) {
  torch::set_num_threads(1);
  Batch both = smooth_halves_batch(4);
  both.target = both.input.clone();
  Batch one = both;
  one.target = torch::Tensor();
  for (const char* name : {"ei", "cryogen-ot"}) {
    const nlohmann::json net = {{"depth", 2}, {"base_channels", 4}, {"proxy_noise", "halves"}};
    nlohmann::json single = net;
    single["input"] = "one";
    torch::manual_seed(11);
    auto m_one = method_create(name, single);
    torch::manual_seed(11);
    auto m_two = method_create(name, net);
    EXPECT_FALSE(m_one->needs_halves()) << name;
    EXPECT_TRUE(m_two->needs_halves()) << name;
    torch::manual_seed(5);
    const double l_one = m_one->loss(one).item<double>();
    torch::manual_seed(5);
    const double l_two = m_two->loss(both).item<double>();
    EXPECT_TRUE(std::isfinite(l_one)) << name;
    EXPECT_NEAR(l_one, l_two, 1e-6 * std::abs(l_two)) << name;
    EXPECT_THROW(m_two->loss(one), ShapeError) << name;  // "target (odd half) is missing"
    nlohmann::json bad = net;
    bad["input"] = "two";
    EXPECT_THROW(method_create(name, bad), ValueError) << name;
  }
  auto opts = method_create("cryogen-ot", {{"depth", 2}, {"base_channels", 4}, {"proxy_noise", "halves"},
                                           {"input", "one"}})
                  ->options_json();
  ProxyProbe probe(opts);
  auto st = probe.proxy_setup(one);
  EXPECT_TRUE(torch::equal(st.y_a, st.y_b));
  EXPECT_EQ(st.noise.abs().max().item<double>(), 0.0);
}

TEST(WedgeMethods, RegisteredWithOptions) {
  for (const char* n : {"isonet", "ddw", "ei", "cryogen-map", "cryogen-ot"}) {
    const auto& info = method_registry().get(n);
    EXPECT_FALSE(info.description.empty());
    const std::string s(n);
    EXPECT_EQ(info.needs_halves(), s == "ddw" || s == "cryogen-map") << n;
    // ei and cryogen-ot train on halves or on one tomogram (with their one-tomogram options).
    EXPECT_EQ(info.can.halves && info.can.single, s == "ei" || s == "cryogen-ot") << n;
    EXPECT_EQ(info.one_tomogram_defaults.value("input", ""), info.can.single && info.can.halves ? "one" : "")
        << n;
  }
  // ei and cryogen-ot share the core's one-tomogram options; cryogen-ot also turns its prior off.
  nlohmann::json ot = method_registry().get("cryogen-ot").one_tomogram_defaults;
  EXPECT_EQ(ot.at("prior_share").get<double>(), 0.0);
  ot.erase("prior_share");
  EXPECT_EQ(ot, method_registry().get("ei").one_tomogram_defaults);
  EXPECT_EQ(ot.at("target"), "data");
  EXPECT_EQ(ot.at("symmetric"), false);
  EXPECT_DOUBLE_EQ(method_create("ddw")->options_json()["lambda"].get<double>(), 2.0);
  EXPECT_THROW(method_create("cryogen-ot", {{"ot", "emd"}}), ValueError);
  EXPECT_THROW(method_create("ddw", {{"lambda", -1.0}}), ValueError);
  EXPECT_THROW(method_create("ei", {{"rotations", "octahedral"}}), ValueError);
  EXPECT_THROW(method_create("cryogen-ot", {{"proxy_noise", "pink"}}), ValueError);
  EXPECT_THROW(method_create("cryogen-map", {{"prior_share", 1.0}}), ValueError);
}

namespace {

// Brute force, per frequency of the full FFT grid: is (kz, ky, kx) measured for [a, b] about Y?
// (DESIGN §1: phi = atan2(kz, kx) folded into (-90, 90]; the kz = 0 plane is always measured.)
bool measured_brute(double kz, double kx, double a, double b) {
  if (std::abs(kz) < 1e-12) return true;
  double phi = std::atan2(kz, kx) * 180.0 / M_PI;
  if (phi > 90.0) phi -= 180.0;
  if (phi <= -90.0) phi += 180.0;
  return phi >= a - 1e-9 && phi <= b + 1e-9;
}

// Fraction of the missing region that R moves into the rotated measured region, by a loop over
// every frequency k of an n³ grid: missing(k) and measured(R^T k).
double moved_fraction_brute(int64_t n, double a, double b, const torch::Tensor& R) {
  auto r = R.to(torch::kDouble).contiguous();
  double rm[3][3];  // rows/cols over (x, y, z)
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) rm[i][j] = r[i][j].item<double>();
  auto at = [&](int i, int j) { return rm[i][j]; };
  int64_t missing = 0, moved = 0;
  for (int64_t iz = 0; iz < n; ++iz)
    for (int64_t iy = 0; iy < n; ++iy)
      for (int64_t ix = 0; ix < n; ++ix) {
        auto f = [&](int64_t i) { return double(i < (n + 1) / 2 ? i : i - n) / double(n); };
        const double kx = f(ix), ky = f(iy), kz = f(iz);
        if (measured_brute(kz, kx, a, b)) continue;
        // Nyquist samples stand for both signs: skip them (the mask code treats them specially).
        if (2 * ix == n || 2 * iy == n || 2 * iz == n) continue;
        ++missing;
        // R^T k with k = (x, y, z).
        const double sx = at(0, 0) * kx + at(1, 0) * ky + at(2, 0) * kz;
        const double sz = at(0, 2) * kx + at(1, 2) * ky + at(2, 2) * kz;
        if (measured_brute(sz, sx, a, b)) ++moved;
      }
  return double(moved) / double(missing);
}

}  // namespace

TEST(WedgeRotations, MovedFractionAgreesWithBruteForceCount) {
  // Odd grid (no Nyquist samples): the library's half-grid count and the brute-force loop over
  // the full grid must agree exactly for every cube rotation; ±60° and an asymmetric range.
  for (auto range : {std::pair<double, double>{-60, 60}, {-50, 65}}) {
    WedgeGeometry g{range.first, range.second, false};
    std::vector<double> fracs;
    for (const auto& r : cube_rotations()) {
      const double lib = wedge_moved_fraction({15, 15, 15}, g, r.matrix());
      const double ref = moved_fraction_brute(15, range.first, range.second, r.matrix());
      EXPECT_NEAR(lib, ref, 1e-9) << r.name();
      fracs.push_back(ref);
    }
    // The filter keeps exactly the rotations the brute-force count puts at or above the threshold
    // (on its own 32³ grid: compare against the brute force on 32³ without Nyquist samples,
    // whose fractions differ from 15³ by < 0.05, far from the threshold's neighbours).
    auto kept = wedge_moving_cube_rotations({16, 16, 16}, g, 0.5);
    int64_t expect = 0;
    for (const auto& r : cube_rotations()) {
      const bool in = std::find(kept.begin(), kept.end(), r) != kept.end();
      const double ref = moved_fraction_brute(32, range.first, range.second, r.matrix());
      EXPECT_EQ(in, ref >= 0.5) << r.name() << " fraction " << ref;
      expect += ref >= 0.5;
    }
    EXPECT_EQ(int64_t(kept.size()), expect);
    EXPECT_GT(expect, 0);
    EXPECT_LT(expect, 24);  // the identity never moves the wedge
  }
  // Haar draws of the sampler's cube set are exact rotations of the set, applied without
  // interpolation: a cube-rotated volume equals cube_rotate of it.
  torch::manual_seed(5);
  WedgeRotationSampler s(WedgeRotations::cube, 0.5);
  WedgeGeometry g{-60, 60, false};
  auto d = s.draw({8, 8, 8}, {g, g, g}, torch::kCPU);
  auto x = torch::randn({3, 1, 8, 8, 8});
  auto rx = wedge_rotate(x, d, 0);
  for (int64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(d.cube[size_t(i)].has_value());
    EXPECT_TRUE(torch::equal(rx[i], cube_rotate(x[i], *d.cube[size_t(i)])));
    EXPECT_GE(wedge_moved_fraction({32, 32, 32}, g, d.R[i]), 0.5);
  }
}

TEST(WedgeRotations, RotatedMeasuredMaskHoldsTheRotatedData) {
  // For every cube rotation and Haar draws: a volume with data only in M, rotated as the methods
  // rotate it (wedge_rotate), has data only in M_R (wedge_mask_rfft_rotated of the same R).
  torch::manual_seed(9);
  const int64_t n = 16;
  WedgeGeometry g{-50, 65, false};
  auto m = wedge_mask_rfft({n, n, n}, g, torch::kCPU);
  auto v = wedge_apply(torch::randn({1, 1, n, n, n}), m);
  for (const auto& r : cube_rotations()) {
    WedgeRotationDraw d;
    d.R = r.matrix().to(torch::kFloat).unsqueeze(0);
    d.cube = {r};
    auto rv = wedge_rotate(v, d, 0);
    auto m_rot = wedge_mask_rfft_rotated({n, n, n}, g, d.R)[0];
    auto s = torch::fft::rfftn(rv, c10::nullopt, kDims, "ortho").abs().square();
    const double outside = (s * (1 - m_rot)).sum().item<double>();
    const double inside = (s * m_rot).sum().item<double>();
    EXPECT_LT(outside, 1e-9 * inside) << r.name();
  }
}

TEST(ProxyCore, ZeroForIdentityOnIsotropicVolumesWhenTheRotationKeepsTheWedge) {
  // G = identity, x_a = x_b = x band-limited and isotropic: T_M(R x) equals R x wherever the
  // rotated target has data (M_R = M for a wedge-keeping R), so the proxy term vanishes; a
  // wedge-moving rotation leaves the band M_R·(1−M) unexplained and the term is positive.
  torch::manual_seed(7);
  const int64_t n = 16;
  auto x = torch::randn({2, 1, n, n, n});
  auto f = fourier_freq_rfft({n, n, n}, torch::TensorOptions().dtype(torch::kFloat));
  auto r2 = (f.kz.square() + f.ky.square() + f.kx.square());
  auto low = r2.le(0.2 * 0.2).to(torch::kFloat);  // isotropic band limit
  x = torch::fft::irfftn(torch::fft::rfftn(x, c10::nullopt, kDims, "ortho") * low,
                         std::vector<int64_t>{n, n, n}, kDims, "ortho");
  WedgeGeometry g{-60, 60, false};
  auto identity = [](const torch::Tensor& v) { return v; };
  auto m = wedge_mask_rfft({n, n, n}, g, torch::kCPU).view({1, 1, n, n, n / 2 + 1}).expand({2, 1, n, n, n / 2 + 1});
  auto term = [&](const CubeRotation& r) {
    WedgeRotationDraw d;
    d.R = torch::stack({r.matrix(), r.matrix()}).to(torch::kFloat);
    d.cube = {r, r};
    auto m_rot = wedge_mask_rfft_rotated({n, n, n}, g, d.R).unsqueeze(1);
    return wedge_proxy_term(identity, x, x, d, 0, m, m_rot, {}, 2.0).item<double>();
  };
  auto keep = cube_rotations_keeping_wedge(g);
  ASSERT_GE(keep.size(), 2u);
  const double power = x.square().mean().item<double>();
  for (const auto& r : keep) EXPECT_LT(term(r), 1e-10 * power) << r.name();
  auto moving = wedge_moving_cube_rotations({n, n, n}, g, 0.5);
  ASSERT_FALSE(moving.empty());
  EXPECT_GT(term(moving.front()), 1e-3 * power);
}

TEST(ProxyCore, PriorGradientOnlyReachesTheWedgeComponent) {
  // The priors see x̂' = M·sg(x̂) + (1−M)·x̂: the gradient of anything computed from x̂' with
  // respect to x̂ has no measured-band component (autograd check on a rotated, re-wedged,
  // feature-matched pseudo-observation, as cryogen-ot builds it).
  torch::manual_seed(8);
  const int64_t n = 16;
  WedgeGeometry g{-50, 65, false};
  auto m = wedge_mask_rfft({n, n, n}, g, torch::kCPU).view({1, 1, n, n, n / 2 + 1});
  auto x = torch::randn({2, 1, n, n, n}).requires_grad_(true);
  auto xp = wedge_component_only(x, m);
  EXPECT_LT((xp - x).abs().max().item<double>(), 1e-5);  // same values
  WedgeRotationSampler s(WedgeRotations::haar, 0.5);
  auto d = s.draw({n, n, n}, {g, g}, torch::kCPU);
  auto pseudo = wedge_apply(wedge_rotate(xp, d, 8), wedge_mask_rfft({8, 8, 8}, g, torch::kCPU));
  auto real = torch::randn({2, 1, 8, 8, 8});
  auto ot = sliced_wasserstein2_normalised(pseudo.reshape({-1, 8}), real.reshape({-1, 8}), 16);
  ot.backward();
  auto gs = torch::fft::rfftn(x.grad(), c10::nullopt, kDims, "ortho");
  const double measured = (gs * m).abs().square().sum().item<double>();
  const double wedge = (gs * (1 - m)).abs().square().sum().item<double>();
  EXPECT_GT(wedge, 0.0);
  EXPECT_LT(measured, 1e-10 * wedge);
}

TEST(ProxyCore, PaddedBandFilterIsALinearConvolution) {
  // A symmetric 3×3×3 kernel h has a real spectrum: filtering with it on the doubled grid must
  // equal the zero-padded (non-circular) convolution computed directly by conv3d, while the
  // same filter on the box's own grid wraps the faces onto each other and differs there.
  torch::manual_seed(9);
  const int64_t n = 8, b = 2;
  auto v = torch::randn({b, 1, n, n, n}, torch::kDouble);
  auto h = torch::rand({3, 3, 3}, torch::kDouble);
  h = (h + h.flip({0}) + h.flip({1}) + h.flip({2}) + h.flip({0, 1}) + h.flip({0, 2}) + h.flip({1, 2}) +
       h.flip({0, 1, 2})) / 8.0;  // h(d) = h(-d) along each axis
  auto spectrum = [&](int64_t m) {  // unnormalised rfft of h placed at offsets -1, 0, 1 of an m-grid
    auto grid = torch::zeros({m, m, m}, torch::kDouble);
    for (int64_t i = -1; i <= 1; ++i)
      for (int64_t j = -1; j <= 1; ++j)
        for (int64_t k = -1; k <= 1; ++k)
          grid[(i + m) % m][(j + m) % m][(k + m) % m] = h[i + 1][j + 1][k + 1];
    auto s = torch::fft::rfftn(grid, c10::nullopt, kDims);
    EXPECT_LT(torch::imag(s).abs().max().item<double>(), 1e-12);
    return torch::real(s).view({1, 1, m, m, m / 2 + 1});
  };
  auto direct = torch::conv3d(v, h.view({1, 1, 3, 3, 3}), {}, 1, 1);
  auto padded = band_filter_padded(v, spectrum(2 * n));
  ASSERT_EQ(padded.sizes(), v.sizes());
  EXPECT_LT((padded - direct).abs().max().item<double>(), 1e-10);
  auto periodic = fourier_irfft3(spectrum(n) * fourier_rfft3(v), {n, n, n});
  EXPECT_GT((periodic - direct).abs().max().item<double>(), 1e-3);
  // Inside, one voxel from every face, the two agree.
  auto inner = [&](const torch::Tensor& t) { return t.narrow(2, 1, n - 2).narrow(3, 1, n - 2).narrow(4, 1, n - 2); };
  EXPECT_LT((inner(periodic) - inner(direct)).abs().max().item<double>(), 1e-10);
}

// cryogen-ot's prior compares low-passed clouds: the cutoff it reports is the fixed one when
// given, none when off, and by default (auto) one at most prior_lowpass_max; out-of-range
// settings are refused.
TEST(WedgeMethods, CryogenOtPriorLowPassCutoff) {
  torch::set_num_threads(1);
  auto cutoff = [](nlohmann::json opts) {
    opts["depth"] = 2;
    opts["base_channels"] = 4;
    opts["prior_start"] = 0;
    opts["features"] = "voxels";
    auto m = method_create("cryogen-ot", opts);
    Batch b = smooth_halves_batch(21);
    m->loss(b);
    for (const auto& [k, v] : m->step_stats()) {
      if (k == "prior_lowpass") return v;
    }
    return -1.0;
  };
  EXPECT_EQ(method_create("cryogen-ot", nlohmann::json::object())->options_json().at("prior_lowpass"), 0.0);
  EXPECT_DOUBLE_EQ(cutoff({{"prior_lowpass", 0.15}}), 0.15);
  EXPECT_DOUBLE_EQ(cutoff({{"prior_lowpass", -1.0}}), 0.0);
  const double a = cutoff(nlohmann::json::object());
  EXPECT_GT(a, 0.0);
  EXPECT_LE(a, 0.2);
  const double capped = cutoff({{"prior_lowpass_max", 0.1}});
  EXPECT_GT(capped, 0.0);
  EXPECT_LE(capped, 0.1);
  EXPECT_THROW(method_create("cryogen-ot", {{"prior_lowpass", 0.6}}), ValueError);
  EXPECT_THROW(method_create("cryogen-ot", {{"prior_lowpass_max", 0.0}}), ValueError);
  EXPECT_THROW(method_create("cryogen-ot", {{"prior_fsc", 1.0}}), ValueError);
}

TEST(ProxyCore, LossWindowAndEncoderStartAreChecked) {
  EXPECT_THROW(method_create("cryogen-ot", {{"encoder_start", -2}}), ValueError);
  EXPECT_THROW(method_create("ei", {{"loss_window", 0.0}}), ValueError);
  EXPECT_THROW(method_create("ei", {{"loss_window", 1.5}}), ValueError);
}

TEST(ProxyCore, AdaptiveWeightGivesThePriorItsShare) {
  // For losses whose gradients on p are c·u and q·v: w = share/(1−share)·|c u|/|q v|, so that
  // |w ∇prior| / (|∇core| + |w ∇prior|) = share.
  auto p = torch::randn({5}).requires_grad_(true);
  auto core = 3.0 * (p * torch::arange(5.0)).sum();
  auto prior = 0.5 * p.square().sum();
  const double share = 0.2;
  const double w = adaptive_prior_weight(core, prior, p, share, 1e9).value();
  const double nc = 3.0 * torch::arange(5.0).norm().item<double>();
  const double np = (p.detach()).norm().item<double>();
  EXPECT_NEAR(w, share / (1 - share) * nc / np, 1e-5 * w);
  EXPECT_NEAR(w * np / (nc + w * np), share, 1e-6);
  EXPECT_DOUBLE_EQ(adaptive_prior_weight(core, prior, p, share, 0.1).value(), 0.1);  // clamped
  {
    torch::NoGradGuard no_grad;  // validation: no weight from a pass without gradients
    EXPECT_FALSE(adaptive_prior_weight(core, prior, p, share, 1e9).has_value());
  }
}

// ddw's cube rotations keep the whole patch, so they need a cubic one; Haar rotations crop and
// take any shape.
TEST(WedgeMethods, DdwCubeRotationsNeedCubicPatches) {
  torch::set_num_threads(1);
  torch::manual_seed(5);
  Batch b;
  b.input = torch::randn({2, 1, 16, 16, 24});
  b.target = torch::randn({2, 1, 16, 16, 24});
  b.wedge = {MethodWedge{-60, 60, false}};
  const nlohmann::json cube{{"depth", 1}, {"base_channels", 2}};  // cube is the default
  auto haar = cube;
  haar["rotations"] = "haar";
  EXPECT_THROW(method_create("ddw", cube)->loss(b), ShapeError);
  EXPECT_TRUE(std::isfinite(method_create("ddw", haar)->loss(b).item<double>()));
  EXPECT_THROW(method_create("ddw", {{"rotations", "octahedral"}}), ValueError);
}

TEST(WedgeMethods, SignFlagMirrorsTheTiltRange) {
  // mask([a, b], flip) == mask([-b, -a]) (ops/wedge.h): the same seed gives the same ddw loss for
  // {-50, 65, flip} and {-65, 50, no flip}, and a different one for {-50, 65, no flip}.
  torch::set_num_threads(1);
  auto m = method_create("ddw", {{"depth", 1}, {"base_channels", 2}, {"refill_every", 0}});
  torch::manual_seed(31);
  auto x = torch::randn({2, 1, 12, 12, 12});
  auto y = torch::randn({2, 1, 12, 12, 12});
  auto loss_with = [&](MethodWedge w) {
    Batch b;
    b.input = x;
    b.target = y;
    b.wedge = {w};
    torch::manual_seed(32);
    return m->loss(b).item<double>();
  };
  const double flipped = loss_with({-50, 65, true});
  const double mirrored = loss_with({-65, 50, false});
  const double plain = loss_with({-50, 65, false});
  EXPECT_NEAR(flipped, mirrored, 1e-6 * std::abs(mirrored));
  EXPECT_GT(std::abs(flipped - plain), 1e-4 * std::abs(plain));
}
