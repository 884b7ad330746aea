// Methods: registry, option parsing, n2v masking and loss, n2n overfitting, save/load.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

#include "unwedge/core/error.h"
#include "unwedge/methods/augment.h"
#include "unwedge/methods/embed.h"
#include "unwedge/methods/method.h"
#include "unwedge/methods/posterior.h"
#include "unwedge/methods/n2n.h"
#include "unwedge/methods/n2v.h"

using namespace unwedge;

static std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ValueError& e) {
    return e.what();
  }
  return "";
}

TEST(Registry, ListsBuiltinsAndRejectsDuplicatesAndUnknownNames) {
  const auto& reg = method_registry();
  ASSERT_TRUE(reg.has("n2n"));
  ASSERT_TRUE(reg.has("n2v"));
  EXPECT_TRUE(reg.get("n2n").needs_halves());
  EXPECT_FALSE(reg.get("n2v").needs_halves());
  for (const auto& m : reg.list()) EXPECT_FALSE(m.description.empty()) << m.name;

  MethodRegistry r;
  r.add(n2n_method_info());
  EXPECT_THROW(r.add(n2n_method_info()), ValueError);
  r.add(n2v_method_info());
  std::string msg = error_of([&] { r.get("n3n"); });
  EXPECT_NE(msg.find("n3n"), std::string::npos) << msg;
  EXPECT_NE(msg.find("n2n, n2v"), std::string::npos) << msg;
  msg = error_of([] { method_create("nope"); });
  EXPECT_NE(msg.find("n2v"), std::string::npos) << msg;
}

TEST(Registry, OptionsResolveAndParse) {
  auto m = method_create("n2v", {{"radius", 3}, {"depth", 2}});
  auto j = m->options_json();
  EXPECT_EQ(j["radius"], 3);
  EXPECT_EQ(j["depth"], 2);
  EXPECT_DOUBLE_EQ(j["mask_fraction"].get<double>(), 0.01);
  EXPECT_EQ(j["base_channels"], 16);
  // Recreated from its own options: the same options.
  EXPECT_EQ(method_create("n2v", j)->options_json(), j);

  std::string msg = error_of([] { method_create("n2n", {{"radius", 2}}); });
  EXPECT_NE(msg.find("radius"), std::string::npos);
  EXPECT_NE(msg.find("swap"), std::string::npos) << msg;  // lists the known keys
  EXPECT_THROW(method_create("n2n", {{"depth", "deep"}}), ValueError);
  EXPECT_THROW(method_create("n2v", {{"struct_mask", "q,2"}}), ValueError);
  EXPECT_THROW(method_create("n2n", {{"norm", "layer"}}), ValueError);

  auto p = method_options_parse(
      "n2v", {"mask_fraction=0.02", "radius=4", "struct_mask=z,3", "residual=no", "dropout=0"});
  EXPECT_DOUBLE_EQ(p["mask_fraction"].get<double>(), 0.02);
  EXPECT_EQ(p["radius"], 4);
  EXPECT_EQ(p["struct_mask"], "z,3");
  EXPECT_EQ(p["residual"], false);
  EXPECT_NO_THROW(method_create("n2v", p));
  EXPECT_THROW(method_options_parse("n2v", {"radius"}), ValueError);
  EXPECT_THROW(method_options_parse("n2v", {"radius=2.5"}), ValueError);
  EXPECT_THROW(method_options_parse("n2v", {"radios=2"}), ValueError);
  EXPECT_THROW(method_options_parse("n2v", {"residual=maybe"}), ValueError);
}

// The capabilities in the registry are data the CLI trusts: each must agree with what the
// created method is (its interfaces and its own answers), and the names listed for messages
// follow DESIGN.md §4 (posterior: the two CryoWGEN methods; embedding: mae and contrastive).
TEST(Registry, CapabilitiesAgreeWithTheCreatedMethods) {
  for (const auto& info : method_registry().list()) {
    auto m = method_create(info.name);
    EXPECT_TRUE(info.can.halves || info.can.single) << info.name;
    if (info.can.halves && info.can.single) {
      // Both (ei, cryogen-ot): the default model takes halves, the one-tomogram options make one
      // that takes one tomogram.
      EXPECT_TRUE(m->needs_halves()) << info.name;
      EXPECT_FALSE(method_create(info.name, info.one_tomogram_defaults)->needs_halves()) << info.name;
    } else {
      EXPECT_EQ(m->needs_halves(), info.needs_halves()) << info.name;
      EXPECT_TRUE(info.one_tomogram_defaults.empty()) << info.name;
    }
    EXPECT_EQ(dynamic_cast<PosteriorMethod*>(m.get()) != nullptr, info.can.posterior) << info.name;
    EXPECT_EQ(m->stochastic(), info.can.posterior) << info.name;
    EXPECT_EQ(dynamic_cast<Embedder*>(m.get()) != nullptr, info.can.embedding) << info.name;
    if (info.can.tilt_series) {
      EXPECT_TRUE(m->options_json().contains("planar")) << info.name << ": tilt series need planar";
    }
  }
  const auto& reg = method_registry();
  EXPECT_EQ(reg.names_with(&MethodCapabilities::posterior), "cryowgen-mc, cryowgen-langevin");
  EXPECT_EQ(reg.names_with(&MethodCapabilities::embedding), "mae, contrastive");
  EXPECT_EQ(reg.names_with(&MethodCapabilities::tilt_series), "n2v");
  MethodRegistry r;
  MethodInfo neither = n2n_method_info();
  neither.can = MethodCapabilities{};
  std::string msg = error_of([&] { r.add(neither); });
  EXPECT_NE(msg.find("neither half tomograms nor one tomogram"), std::string::npos) << msg;
}

TEST(Methods, DeterministicMethodsRefuseToSample) {
  auto m = method_create("n2n", {{"depth", 1}, {"base_channels", 2}});
  std::string msg = error_of([&] { method_posterior(*m); });
  EXPECT_NE(msg.find("n2n is deterministic"), std::string::npos) << msg;
}

// Brute-force check of every masked voxel of n2v_mask against its definition.
static void check_masking(const torch::Tensor& x, const N2VMasking& m, int64_t radius,
                          const N2VStructMask& sm, bool planar) {
  const int64_t Z = x.size(2), Y = x.size(3), X = x.size(4);
  auto src = m.source.contiguous();
  auto msk = m.mask.contiguous();
  auto in = m.input.contiguous();
  auto xv = x.contiguous();
  auto sa = src.accessor<int64_t, 5>();
  auto ma = msk.accessor<bool, 5>();
  auto ia = in.accessor<float, 5>();
  auto xa = xv.accessor<float, 5>();
  int64_t masked = 0;
  for (int64_t b = 0; b < x.size(0); ++b)
    for (int64_t z = 0; z < Z; ++z)
      for (int64_t y = 0; y < Y; ++y)
        for (int64_t xx = 0; xx < X; ++xx) {
          int64_t s = sa[b][0][z][y][xx];
          ASSERT_EQ(ma[b][0][z][y][xx], s >= 0);
          if (s < 0) continue;
          ++masked;
          int64_t sz = s / (Y * X), sy = (s / X) % Y, sx = s % X;
          ASSERT_FALSE(sz == z && sy == y && sx == xx) << "picked itself at " << z << "," << y
                                                       << "," << xx;
          ASSERT_LE(std::abs(sz - z), radius);
          ASSERT_LE(std::abs(sy - y), radius);
          ASSERT_LE(std::abs(sx - xx), radius);
          if (planar) {
            ASSERT_EQ(sz, z);
          }
          if (sm.axis >= 0) {  // never a source on the blanked line
            std::array<int64_t, 3> d{sz - z, sy - y, sx - xx};
            bool off = false;
            for (int a = 0; a < 3; ++a) off = off || (a != sm.axis && d[a] != 0);
            ASSERT_TRUE(off);
          }
          ASSERT_EQ(ia[b][0][z][y][xx], xa[b][0][sz][sy][sx]);
        }
  EXPECT_GT(masked, 0);
}

TEST(N2V, MaskNeverPicksTheVoxelItself) {
  // Small volumes make most masked voxels border voxels; a high fraction covers many.
  struct Case {
    std::vector<int64_t> shape;
    int64_t radius;
    N2VStructMask sm;
    bool planar;
  };
  std::vector<Case> cases = {
      {{2, 1, 5, 6, 7}, 2, {}, false},
      {{2, 1, 3, 3, 3}, 1, {}, false},
      {{1, 1, 2, 9, 2}, 3, {}, false},
      {{2, 1, 6, 6, 6}, 2, {0, 2}, false},
      {{2, 1, 6, 6, 6}, 1, {2, 3}, false},
      {{3, 1, 1, 8, 8}, 2, {}, true},
  };
  for (int seed = 0; seed < 40; ++seed) {
    for (const auto& c : cases) {
      torch::manual_seed(seed);
      auto x = torch::randn(c.shape);
      auto m = n2v_mask(x, /*fraction=*/0.3, c.radius, c.sm, c.planar);
      check_masking(x, m, c.radius, c.sm, c.planar);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

TEST(N2V, StructMaskBlanksTheLine) {
  torch::manual_seed(5);
  auto x2 = torch::randn({1, 1, 9, 9, 9});
  auto m2 = n2v_mask(x2, 1.0 / 729, 2, {0, 2});
  auto diff = (m2.input != x2).flatten();
  // Exactly one masked voxel (fraction 1 / 729): it and its z-line neighbours (span 2,
  // clipped at the border) change, nothing else does.
  int64_t p = torch::nonzero(m2.mask.flatten()).item<int64_t>();
  int64_t z = p / 81, y = (p / 9) % 9, xx = p % 9;
  for (int64_t i = 0; i < 729; ++i) {
    int64_t zi = i / 81, yi = (i / 9) % 9, xi = i % 9;
    bool on_line = yi == y && xi == xx && std::abs(zi - z) <= 2;
    EXPECT_EQ(diff[i].item<bool>(), on_line) << zi << "," << yi << "," << xi;
  }
}

TEST(N2V, LossOnlyAtMaskedVoxels) {
  torch::manual_seed(6);
  auto x = torch::randn({2, 1, 8, 8, 8});
  auto m = n2v_mask(x, 0.05, 2);
  auto pred = torch::randn_like(x);
  double base = n2v_loss(pred, x, m.mask).item<double>();
  // Independent reference: the mean over masked voxels, by masked_select.
  double ref = (pred - x).square().masked_select(m.mask).mean().item<double>();
  EXPECT_NEAR(base, ref, 1e-6 * std::abs(ref));
  auto unmasked = torch::nonzero(~m.mask.flatten())[0].item<int64_t>();
  auto masked = torch::nonzero(m.mask.flatten())[0].item<int64_t>();
  auto p1 = pred.clone();
  p1.view(-1)[unmasked] += 100.0;
  EXPECT_EQ(n2v_loss(p1, x, m.mask).item<double>(), base);
  auto p2 = pred.clone();
  p2.view(-1)[masked] += 100.0;
  EXPECT_GT(n2v_loss(p2, x, m.mask).item<double>(), base + 1.0);
}

TEST(N2V, TrainsOnTiltImagesWithPlanarNetwork) {
  torch::manual_seed(7);
  auto m = method_create("n2v", {{"planar", true}, {"depth", 2}, {"base_channels", 4}});
  Batch b;
  b.input = torch::randn({2, 1, 1, 16, 16});
  auto l = m->loss(b);
  EXPECT_EQ(l.dim(), 0);
  l.backward();
  EXPECT_EQ(m->restore(b.input).sizes(), b.input.sizes());
}

// A smooth phantom: a few Gaussian blobs on a 16^3 grid.
static torch::Tensor blobs(int64_t n) {
  auto r = torch::arange(n, torch::kFloat);
  auto z = r.view({n, 1, 1}), y = r.view({1, n, 1}), x = r.view({1, 1, n});
  auto v = torch::zeros({n, n, n});
  for (auto c : {std::array<float, 3>{4, 5, 9}, {10, 11, 4}, {8, 3, 12}, {12, 12, 12}}) {
    v += torch::exp(-((z - c[0]).square() + (y - c[1]).square() + (x - c[2]).square()) / 6.0f);
  }
  return v.view({1, 1, n, n, n});
}

TEST(N2N, TinyNetworkOverfitsTinyPair) {
  // One thread: tiny tensors, and two threads on a loaded 2-core machine ran 30x slower.
  torch::set_num_threads(1);
  torch::manual_seed(8);
  auto s = blobs(16);
  Batch b;
  b.input = s + 0.05 * torch::randn_like(s);
  b.target = s + 0.05 * torch::randn_like(s);
  auto m = method_create("n2n", {{"depth", 1}, {"base_channels", 4}, {"residual", false},
                                 {"augment", "none"}, {"swap", false}});
  torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(1e-2));
  double first = 0, last = 0;
  for (int step = 0; step < 150; ++step) {
    opt.zero_grad();
    auto l = m->loss(b);
    l.backward();
    opt.step();
    if (step == 0) first = l.item<double>();
    last = l.item<double>();
  }
  // Tolerance: the loss must fall at least 10x (noise floor 2 * 0.05^2 = 0.005 vs start ~0.1).
  EXPECT_LT(last, first / 10) << "first " << first << " last " << last;
}

TEST(N2N, LossRunsWithAugmentationSwapAndMask) {
  torch::manual_seed(9);
  auto m = method_create("n2n", {{"depth", 1}, {"base_channels", 2}});
  Batch b;
  b.input = torch::randn({3, 1, 4, 6, 8});
  b.target = torch::randn({3, 1, 4, 6, 8});
  b.mask = torch::ones({3, 1, 4, 6, 8});
  b.wedge = {MethodWedge{-50, 65, false}};
  auto l = m->loss(b);
  EXPECT_TRUE(std::isfinite(l.item<double>()));
  b.target = torch::randn({3, 1, 4, 6, 6});
  EXPECT_THROW(m->loss(b), ShapeError);
}

TEST(Augment, SameTransformForInputAndTargetAndWedgeKept) {
  torch::manual_seed(10);
  auto a = torch::randn({6, 1, 4, 5, 6});
  auto out = augment_about_tilt_axis({a, a * 2, torch::Tensor()}, AugmentMode::wedge,
                                     WedgeGeometry{});
  EXPECT_TRUE(torch::allclose(out[1], out[0] * 2));
  EXPECT_FALSE(out[2].defined());
  EXPECT_EQ(out[0].sizes(), a.sizes());
  // Each sample is a flip combination of the original (no axis swap for the wedge set).
  for (int64_t i = 0; i < 6; ++i) {
    bool found = false;
    for (int fz = 0; fz < 2 && !found; ++fz)
      for (int fy = 0; fy < 2 && !found; ++fy)
        for (int fx = 0; fx < 2 && !found; ++fx) {
          std::vector<int64_t> dims;
          if (fz) dims.push_back(0);
          if (fy) dims.push_back(1);
          if (fx) dims.push_back(2);
          auto t = dims.empty() ? a[i][0] : a[i][0].flip(dims);
          found = torch::equal(t, out[0][i][0]);
        }
    EXPECT_TRUE(found) << "sample " << i;
  }
}

TEST(Methods, SaveLoadRoundTripGivesIdenticalOutputs) {
  for (const char* name : {"n2n", "n2v"}) {
    torch::manual_seed(11);
    auto a = method_create(name, {{"depth", 2}, {"base_channels", 4}, {"norm", "batch"}});
    // Train a step so batch-norm running statistics differ from their initial values.
    Batch b;
    b.input = torch::randn({2, 1, 8, 8, 8});
    b.target = torch::randn({2, 1, 8, 8, 8});
    a->train(true);
    a->loss(b).backward();
    std::stringstream buf;
    torch::serialize::OutputArchive out;
    a->save(out);
    out.save_to(buf);
    torch::manual_seed(12);  // a different initialisation
    auto c = method_create(name, a->options_json());
    torch::serialize::InputArchive in;
    in.load_from(buf);
    c->load(in);
    a->train(false);
    c->train(false);
    auto x = torch::randn({1, 1, 8, 8, 8});
    EXPECT_TRUE(torch::equal(a->restore(x), c->restore(x))) << name;
    auto fresh = method_create(name, a->options_json());
    fresh->train(false);
    EXPECT_FALSE(torch::equal(a->restore(x), fresh->restore(x))) << name;
  }
}

TEST(Methods, RestorePairIsMeanOfHalvesAndHandlesOddSizes) {
  torch::manual_seed(13);
  auto m = method_create("n2n", {{"depth", 2}, {"base_channels", 4}});
  m->train(false);
  auto e = torch::randn({1, 1, 7, 9, 10});
  auto o = torch::randn({1, 1, 7, 9, 10});
  auto r = m->restore_pair(e, o);
  EXPECT_EQ(r.sizes(), e.sizes());
  EXPECT_TRUE(torch::allclose(r, 0.5 * (m->restore(e) + m->restore(o)), 1e-6, 1e-6));
  EXPECT_EQ(m->size_multiple(), (std::array<int64_t, 3>{4, 4, 4}));
}
