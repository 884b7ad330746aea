// Representation learning: ViT3d patches, MAE masking and loss, NT-Xent, k-NN, linear probe,
// PCA, and the mae/contrastive methods' save/load.
#include <cmath>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/eval/embedding.h"
#include "unwedge/methods/contrastive.h"
#include "unwedge/methods/embed.h"
#include "unwedge/methods/mae.h"
#include "unwedge/nn/cnn_encoder.h"
#include "unwedge/nn/vit3d.h"

using namespace unwedge;

namespace {

// mae with a one-level, 4-channel U-Net on 4^3 patches, hiding [ratio_min, ratio] per batch.
nlohmann::json tiny_unet_mae(double ratio_min, double ratio) {
  return {{"net", "unet"},        {"patch", 4},           {"unet_depth", 1},
          {"unet_channels", 4},   {"mask_ratio", ratio},  {"mask_ratio_min", ratio_min}};
}

ViT3dOptions tiny_vit() {
  return ViT3dOptions().patch(4).dim(24).depth(1).heads(2).decoder_dim(12).decoder_depth(1)
      .decoder_heads(2);
}

}  // namespace

TEST(Vit3d, PatchifyRoundTripIsExact) {
  torch::manual_seed(1);
  auto x = torch::randn({2, 1, 8, 12, 16});
  auto t = vit3d_patchify(x, 4);
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{2, 2 * 3 * 4, 64}));
  // Token (1, 2, 3) of sample 1 holds the voxels z 4..7, y 8..11, x 12..15, row-major.
  auto expect = x[1][0].slice(0, 4, 8).slice(1, 8, 12).slice(2, 12, 16).reshape({-1});
  EXPECT_TRUE(torch::equal(t[1][1 * 12 + 2 * 4 + 3], expect));
  EXPECT_TRUE(torch::equal(vit3d_unpatchify(t, 4, {2, 3, 4}), x));
  EXPECT_THROW(vit3d_patchify(torch::zeros({1, 1, 8, 8, 6}), 4), ShapeError);
}

TEST(Vit3d, EncoderSeesOnlyTheVisibleTokens) {
  torch::manual_seed(2);
  ViT3d net(tiny_vit());
  auto x = torch::randn({3, 1, 8, 8, 16});  // N = 2*2*4 = 16 tokens
  for (double ratio : {0.75, 0.5, 0.25}) {
    auto m = mae_random_mask(3, 16, ratio, torch::kCPU);
    const int64_t k = 16 - std::llround(ratio * 16);
    ASSERT_EQ(m.keep.sizes(), (std::vector<int64_t>{3, k}));
    EXPECT_EQ(m.hidden.sum().item<double>(), 3.0 * (16 - k));
    // keep and hidden are complementary
    EXPECT_EQ(m.hidden.gather(1, m.keep).sum().item<double>(), 0.0);
    auto enc = net->encode(x, m.keep);
    EXPECT_EQ(enc.sizes(), (std::vector<int64_t>{3, k, 24}));
    auto dec = net->decode(enc, m.keep, {2, 2, 4});
    EXPECT_EQ(dec.sizes(), (std::vector<int64_t>{3, 16, 64}));
  }
  // The encoding of a visible token does not depend on the hidden patches' voxels.
  auto m = mae_random_mask(1, 16, 0.75, torch::kCPU);
  auto x1 = x.narrow(0, 0, 1).clone();
  auto x2 = x1.clone();
  auto t2 = vit3d_patchify(x2, 4);
  t2 = t2 + 10.0 * m.hidden.unsqueeze(-1) * torch::randn_like(t2);
  x2 = vit3d_unpatchify(t2, 4, {2, 2, 4});
  EXPECT_TRUE(torch::allclose(net->encode(x1, m.keep), net->encode(x2, m.keep), 1e-5, 1e-5));
  EXPECT_THROW(mae_random_mask(1, 4, 1.0, torch::kCPU), ValueError);
}

TEST(Mae, LossIgnoresVisiblePatches) {
  torch::manual_seed(3);
  auto pred = torch::randn({2, 10, 8});
  auto target = torch::randn({2, 10, 8});
  auto m = mae_random_mask(2, 10, 0.6, torch::kCPU);
  for (bool norm_pix : {false, true}) {
    auto l0 = mae_loss(pred, target, m.hidden, norm_pix).item<double>();
    auto perturbed = pred + 5.0 * (1 - m.hidden).unsqueeze(-1);  // visible patches only
    EXPECT_DOUBLE_EQ(mae_loss(perturbed, target, m.hidden, norm_pix).item<double>(), l0);
    auto hid = pred + 5.0 * m.hidden.unsqueeze(-1);
    EXPECT_GT(mae_loss(hid, target, m.hidden, norm_pix).item<double>(), l0 + 1.0);
  }
  // Reference: mean over hidden patches of the per-patch MSE, by explicit loops.
  double sum = 0;
  int cnt = 0;
  auto pa = pred.accessor<float, 3>();
  auto ta = target.accessor<float, 3>();
  auto ha = m.hidden.accessor<float, 2>();
  for (int b = 0; b < 2; ++b) {
    for (int n = 0; n < 10; ++n) {
      if (ha[b][n] == 0) continue;
      double s = 0;
      for (int p = 0; p < 8; ++p) s += std::pow(double(pa[b][n][p]) - ta[b][n][p], 2);
      sum += s / 8;
      ++cnt;
    }
  }
  EXPECT_NEAR(mae_loss(pred, target, m.hidden, false).item<double>(), sum / cnt, 1e-5);
}

TEST(Contrastive, NtXentMatchesBruteForce) {
  torch::manual_seed(4);
  auto z1 = torch::randn({3, 5}, torch::kDouble);
  auto z2 = torch::randn({3, 5}, torch::kDouble);
  const double tau = 0.3;
  // Brute force: explicit double loop over all pairs of the 2B unit vectors.
  auto z = torch::cat({z1, z2}, 0);
  const int n = 6;
  std::vector<std::vector<double>> u(n, std::vector<double>(5));
  for (int i = 0; i < n; ++i) {
    double norm = 0;
    for (int d = 0; d < 5; ++d) norm += std::pow(z[i][d].item<double>(), 2);
    for (int d = 0; d < 5; ++d) u[i][d] = z[i][d].item<double>() / std::sqrt(norm);
  }
  double total = 0;
  for (int i = 0; i < n; ++i) {
    const int pos = (i + 3) % n;
    double denom = 0, spos = 0;
    for (int j = 0; j < n; ++j) {
      if (j == i) continue;
      double s = 0;
      for (int d = 0; d < 5; ++d) s += u[i][d] * u[j][d];
      denom += std::exp(s / tau);
      if (j == pos) spos = s / tau;
    }
    total += -(spos - std::log(denom));
  }
  EXPECT_NEAR(nt_xent(z1, z2, tau).item<double>(), total / n, 1e-10);
  EXPECT_THROW(nt_xent(z1.narrow(0, 0, 1), z2.narrow(0, 0, 1), tau), ShapeError);
}

// Small mae and contrastive networks for the method tests.
const nlohmann::json kTinyMae = {{"patch", 4},       {"dim", 24},          {"depth", 1},
                                 {"heads", 2},       {"decoder_dim", 12},  {"decoder_depth", 1},
                                 {"decoder_heads", 2}};
const nlohmann::json kTinyContrastive = {{"base", 4}, {"levels", 2}, {"embed_dim", 8},
                                         {"proj_dim", 4}};

TEST(Methods, MaeAndContrastiveSaveLoadRoundTrip) {
  torch::set_num_threads(1);
  for (auto [name, opts] : {std::pair{std::string("mae"), kTinyMae},
                            std::pair{std::string("contrastive"), kTinyContrastive}}) {
    torch::manual_seed(5);
    auto a = method_create(name, opts);
    torch::manual_seed(6);
    auto b = method_create(name, a->options_json());
    auto x = torch::randn({2, 1, 8, 8, 8});
    Batch batch;
    batch.input = x;
    batch.wedge = {MethodWedge{}};
    auto l = a->loss(batch);
    EXPECT_TRUE(std::isfinite(l.item<double>())) << name;
    l.backward();
    a->train(false);
    b->train(false);
    auto ea = method_embedder(*a).embed(x);
    EXPECT_EQ(ea.size(1), method_embedder(*a).embed_dim());
    EXPECT_FALSE(torch::allclose(ea, method_embedder(*b).embed(x))) << name;
    std::stringstream buf;
    {
      torch::serialize::OutputArchive out;
      a->save(out);
      out.save_to(buf);
    }
    torch::serialize::InputArchive in;
    in.load_from(buf);
    b->load(in);
    EXPECT_TRUE(torch::equal(ea, method_embedder(*b).embed(x))) << name;
  }
  auto c = method_create("contrastive", kTinyContrastive);
  EXPECT_THROW(c->restore(torch::zeros({1, 1, 8, 8, 8})), ValueError);
}

// Pooling of mae's tokens: "concat" keeps every token in order (their mean is the "mean"
// embedding); contrastive has one vector and refuses "concat".
TEST(Methods, MaeConcatPoolKeepsEveryTokenAndItsMeanIsTheMeanPool) {
  torch::set_num_threads(1);
  torch::manual_seed(3);
  auto m = method_create("mae", kTinyMae);
  m->train(false);
  auto x = torch::randn({3, 1, 8, 8, 8});
  Embedder& e = method_embedder(*m);
  auto mean = e.embed(x);  // default pool
  e.set_pool("concat");
  auto cat = e.embed(x);
  ASSERT_EQ(cat.sizes(), (std::vector<int64_t>{3, 8 * 24}));  // (8/4)^3 tokens of width 24
  EXPECT_TRUE(torch::allclose(cat.view({3, 8, 24}).mean(1), mean, 1e-5, 1e-6));
  e.set_pool("mean");
  EXPECT_TRUE(torch::equal(e.embed(x), mean));
  EXPECT_THROW(e.set_pool("max"), ValueError);
  auto c = method_create("contrastive", kTinyContrastive);
  EXPECT_NO_THROW(method_embedder(*c).set_pool("mean"));
  EXPECT_THROW(method_embedder(*c).set_pool("concat"), ValueError);
}

TEST(Methods, MaeRestoreFillsEveryPatch) {
  torch::set_num_threads(1);
  torch::manual_seed(7);
  auto m = method_create("mae", kTinyMae);
  m->train(false);
  auto x = torch::randn({1, 1, 10, 8, 12});  // not multiples of 4: padded and cropped
  auto y = m->restore(x);
  EXPECT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
  // Wedge mode restores too, keeping the measured band of the input.
  nlohmann::json wedge_opts = kTinyMae;
  wedge_opts["mask_mode"] = "wedge";
  auto w = method_create("mae", wedge_opts);
  Batch batch;
  batch.input = torch::randn({2, 1, 8, 8, 8});
  EXPECT_TRUE(std::isfinite(w->loss(batch).item<double>()));
  EXPECT_EQ(w->restore(x).sizes(), x.sizes());
  EXPECT_THROW(method_create("mae", {{"mask_mode", "blob"}}), ValueError);
}

// mae with net=unet: the reconstruction copies the visible patches exactly and cannot see the
// hidden ones (changing what they hold changes nothing); it saves and loads, restores any size,
// trains in wedge mode, and has no token embedding.
TEST(Methods, MaeUnetHidesWhatItMasksAndRoundTrips) {
  torch::set_num_threads(1);
  const nlohmann::json opts = tiny_unet_mae(0.2, 0.6);
  torch::manual_seed(11);
  auto m = method_create("mae", opts);
  auto x = torch::randn({2, 1, 8, 8, 8});
  Batch batch;
  batch.input = x;
  auto l = m->loss(batch);
  ASSERT_TRUE(std::isfinite(l.item<double>()));
  l.backward();
  m->train(false);
  const int64_t n = 8;  // (8/4)^3 patches
  auto mask = mae_random_mask(2, n, 0.5, torch::kCPU);
  auto rec = mae_reconstruct_patches(*m, x, mask.keep);
  ASSERT_EQ(rec.sizes(), x.sizes());
  auto hidden_vox = vit3d_unpatchify(
      mask.hidden.unsqueeze(-1).expand({2, n, 64}).contiguous(), 4, {2, 2, 2});
  EXPECT_TRUE(torch::equal(rec * (1 - hidden_vox), x * (1 - hidden_vox)));
  auto changed = x + 5.0 * torch::randn_like(x) * hidden_vox;
  EXPECT_TRUE(torch::allclose(mae_reconstruct_patches(*m, changed, mask.keep), rec, 1e-5, 1e-6));
  // The prediction does depend on the visible part.
  auto other = x + torch::randn_like(x) * (1 - hidden_vox);
  EXPECT_FALSE(torch::allclose(mae_reconstruct_patches(*m, other, mask.keep) * hidden_vox,
                               rec * hidden_vox, 1e-4, 1e-5));
  // Save / load into a differently initialised model.
  torch::manual_seed(12);
  auto b = method_create("mae", m->options_json());
  b->train(false);
  EXPECT_FALSE(torch::allclose(mae_reconstruct_patches(*b, x, mask.keep), rec));
  std::stringstream buf;
  {
    torch::serialize::OutputArchive out;
    m->save(out);
    out.save_to(buf);
  }
  torch::serialize::InputArchive in;
  in.load_from(buf);
  b->load(in);
  EXPECT_TRUE(torch::equal(mae_reconstruct_patches(*b, x, mask.keep), rec));
  auto odd = torch::randn({1, 1, 10, 8, 12});  // not multiples of 4: padded and cropped
  EXPECT_EQ(m->restore(odd).sizes(), odd.sizes());
  EXPECT_THROW(method_embedder(*m).embed(x), ValueError);
  nlohmann::json wopts = opts;
  wopts["mask_mode"] = "wedge";
  wopts["wedge_width_min_deg"] = 30.0;
  auto w = method_create("mae", wopts);
  EXPECT_TRUE(std::isfinite(w->loss(batch).item<double>()));
  EXPECT_EQ(w->restore(odd).sizes(), odd.sizes());
  EXPECT_THROW(method_create("mae", {{"net", "cnn"}}), ValueError);
  EXPECT_THROW(method_create("mae", {{"mask_ratio", 0.5}, {"mask_ratio_min", 0.7}}), ValueError);
}

// net=unet with mask_ratio_min > 0 draws one ratio per sample: sample i of b hides
// round(r_i n) patches, r_i = lo + (hi - lo) t_i^2 (ratio_draw=low), t_i = (i + u_i) / b; the
// loss is the mean over samples of log(MSE on the sample's hidden voxels + 0.01). Recomputed
// here from the same random draws with mae_reconstruct_patches (a separate code path).
TEST(Methods, MaeUnetPerSampleRatiosAndLogLoss) {
  torch::set_num_threads(1);
  const nlohmann::json opts = tiny_unet_mae(0.1, 0.9);
  torch::manual_seed(21);
  auto m = method_create("mae", opts);
  auto x = torch::randn({4, 1, 8, 16, 16});
  const int64_t n = 2 * 4 * 4, b = x.size(0);
  Batch batch;
  batch.input = x;
  torch::manual_seed(5);
  const double loss = m->loss(batch).item<double>();
  torch::manual_seed(5);
  auto u = torch::rand({b}, torch::kDouble);
  double expected = 0;
  std::vector<int64_t> hidden_counts;
  for (int64_t i = 0; i < b; ++i) {
    const double t = (double(i) + u[i].item<double>()) / double(b);
    auto mask = mae_random_mask(1, n, 0.1 + 0.8 * t * t, torch::kCPU);
    hidden_counts.push_back(int64_t(mask.hidden.sum().item<double>()));
    auto xi = x.narrow(0, i, 1);
    auto rec = mae_reconstruct_patches(*m, xi, mask.keep);
    auto hv = vit3d_unpatchify(mask.hidden.unsqueeze(-1).expand({1, n, 64}).contiguous(), 4,
                               {2, 4, 4});
    const double mse = ((rec - xi).pow(2) * hv).sum().item<double>() / hv.sum().item<double>();
    expected += std::log(mse + 0.01) / double(b);
  }
  EXPECT_NEAR(loss, expected, 1e-5 * std::abs(expected) + 1e-6);
  // Stratified: every sample hides a different amount, fewest first.
  for (int64_t i = 1; i < b; ++i) EXPECT_LT(hidden_counts[size_t(i - 1)], hidden_counts[size_t(i)]);
  // The plain variant: one ratio for the batch and the MSE pooled over its hidden patches.
  nlohmann::json plain = opts;
  plain["ratio_per_sample"] = false;
  auto p = method_create("mae", plain);
  torch::manual_seed(5);
  EXPECT_GT(p->loss(batch).item<double>(), 0.0);
  EXPECT_THROW(method_create("mae", {{"ratio_draw", "cubic"}}), ValueError);
  EXPECT_THROW(method_create("mae", {{"sample_loss", "l1"}}), ValueError);
}

// Reconstructing with flips is the mean of the 8 reconstructions of the flipped volume and
// mask, flipped back; it keeps the visible voxels and is itself flip-equivariant.
TEST(Methods, MaeReconstructWithFlipsIsTheMeanOverTheEightFlips) {
  torch::set_num_threads(1);
  for (const std::string net : {"unet", "vit"}) {
    nlohmann::json opts = {{"net", net}, {"patch", 4}, {"unet_depth", 1}, {"unet_channels", 4},
                           {"dim", 12}, {"depth", 1}, {"heads", 2}, {"decoder_dim", 6},
                           {"decoder_depth", 1}, {"decoder_heads", 2}};
    torch::manual_seed(31);
    auto m = method_create("mae", opts);
    m->train(false);
    auto x = torch::randn({1, 1, 8, 8, 8});
    const int64_t n = 8;
    auto mask = mae_random_mask(1, n, 0.5, torch::kCPU);
    auto hv = vit3d_unpatchify(mask.hidden.unsqueeze(-1).expand({1, n, 64}).contiguous(), 4,
                               {2, 2, 2});
    auto keep_of = [&](const torch::Tensor& hidden_vox) {  // visible patch indices, ascending
      auto h = vit3d_patchify(hidden_vox, 4).amax(-1)[0];
      return torch::nonzero(h < 0.5).flatten().unsqueeze(0);
    };
    torch::Tensor mean = torch::zeros_like(x);
    for (const std::vector<int64_t>& dims : std::vector<std::vector<int64_t>>{
             {}, {2}, {3}, {4}, {2, 3}, {2, 4}, {3, 4}, {2, 3, 4}}) {
      auto f = [&](const torch::Tensor& t) { return dims.empty() ? t : t.flip(dims); };
      mean += f(mae_reconstruct_patches(*m, f(x), keep_of(f(hv)))) / 8.0;
    }
    auto rec = mae_reconstruct_patches(*m, x, mask.keep, true);
    EXPECT_TRUE(torch::allclose(rec, mean, 1e-5, 1e-6)) << net;
    EXPECT_TRUE(torch::equal(rec * (1 - hv), x * (1 - hv))) << net;
    EXPECT_FALSE(torch::allclose(rec, mae_reconstruct_patches(*m, x, mask.keep), 1e-4, 1e-5))
        << net;
    auto flipped = mae_reconstruct_patches(*m, x.flip({4}), keep_of(hv.flip({4})), true);
    EXPECT_TRUE(torch::allclose(flipped, rec.flip({4}), 1e-5, 1e-6)) << net;
  }
}

TEST(Embedding, KnnIsPerfectOnSeparableAndChanceOnRandomLabels) {
  torch::manual_seed(8);
  // Three well-separated Gaussian clusters in 10 D.
  const int64_t per = 40, c = 3;
  auto centres = torch::randn({c, 10}, torch::kDouble) * 20.0;
  auto y = torch::arange(c).repeat_interleave(per);                        // [120]
  auto x = centres.index_select(0, y) + torch::randn({c * per, 10}, torch::kDouble);
  EXPECT_DOUBLE_EQ(knn_cv_accuracy(x, y, 5, 5, 1), 1.0);
  EXPECT_DOUBLE_EQ(linear_probe_cv_accuracy(x, y, 5, 100, 1e-3, 1), 1.0);
  // Labels independent of the features: accuracy near chance (1/3); with 600 samples the
  // binomial std is ~0.02, so [0.2, 0.47] is more than 5 std wide each side.
  auto xr = torch::randn({600, 10}, torch::kDouble);
  auto yr = torch::randint(3, {600}, torch::kLong);
  const double acc = knn_cv_accuracy(xr, yr, 5, 5, 2);
  EXPECT_GT(acc, 0.20);
  EXPECT_LT(acc, 0.47);
  const double lin = linear_probe_cv_accuracy(xr, yr, 5, 50, 1e-3, 2);
  EXPECT_GT(lin, 0.20);
  EXPECT_LT(lin, 0.47);
}

TEST(Embedding, PcaOfPointsOnALine) {
  // x_i = a + t_i d with unit d: the first component is d (sign: largest entry positive), its
  // scores are t_i - mean(t), its variance var(t), and nothing is left for the others.
  auto d = torch::tensor({0.0, -3.0, 4.0}, torch::kDouble) / 5.0;  // largest entry +0.8
  auto a = torch::tensor({1.0, 2.0, -1.0}, torch::kDouble);
  auto t = torch::tensor({-2.0, 0.5, 1.0, 3.0, 7.5}, torch::kDouble);
  auto x = a + t.unsqueeze(1) * d;
  auto p = pca_fit(x, 2);
  EXPECT_TRUE(torch::allclose(p.components[0], d, 1e-10, 1e-10));
  EXPECT_TRUE(torch::allclose(p.scores.select(1, 0), t - t.mean(), 1e-10, 1e-10));
  EXPECT_NEAR(p.explained[0].item<double>(), t.var().item<double>(), 1e-10);
  EXPECT_NEAR(p.explained[1].item<double>(), 0.0, 1e-10);
}

TEST(Embedding, BoxesParticlesAndCsvRoundTrip) {
  auto vol = torch::arange(6 * 7 * 8, torch::kFloat).view({6, 7, 8});
  ParticleTable t;
  t.xyz = {{4, 3, 2}, {0, 0, 0}};
  auto boxes = subtomo_extract(vol, t, 4, 0, 2);
  ASSERT_EQ(boxes.sizes(), (std::vector<int64_t>{2, 1, 4, 4, 4}));
  // particle 0 at (x4, y3, z2): the box starts at (z0, y1, x2)
  EXPECT_TRUE(torch::equal(boxes[0][0], vol.slice(0, 0, 4).slice(1, 1, 5).slice(2, 2, 6)));
  // particle 1 at the corner: the box starts at -2 on every axis, zero outside
  EXPECT_EQ(boxes[1][0][1][1][1].item<float>(), 0.0f);
  EXPECT_EQ(boxes[1][0][2][2][2].item<float>(), vol[0][0][0].item<float>());
  EXPECT_EQ(boxes[1][0][3][2][3].item<float>(), vol[1][0][1].item<float>());

  const std::string dir = ::testing::TempDir();
  const std::string csv = dir + "/repr_particles.csv";
  {
    std::ofstream f(csv);
    f << "class,class_id,x_vox,y_vox,z_vox,radius_vox\nribo,0,1.5,2,3,4\nprot,1,5,6,7,2\n";
  }
  auto pt = particle_table_read(csv);
  ASSERT_EQ(pt.xyz.size(), 2u);
  EXPECT_EQ(pt.xyz[1][2], 7.0);
  EXPECT_EQ(pt.labels[0], "ribo");
  const std::string star = dir + "/repr_particles.star";
  {
    std::ofstream f(star);
    f << "data_particles\n\nloop_\n_rlnTomoName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
         "_rlnCoordinateZ #4\ntomo1 10 20 30\ntomo1 1 2 3\n";
  }
  auto ps = particle_table_read(star);
  ASSERT_EQ(ps.xyz.size(), 2u);
  EXPECT_EQ(ps.xyz[0][1], 20.0);
  EXPECT_EQ(ps.xyz[1][2], 3.0);

  auto e = torch::randn({3, 4}, torch::kDouble);
  const std::string ef = dir + "/repr_emb.csv";
  embedding_csv_write(ef, {0, 2, 5}, e, /*overwrite=*/true);
  auto back = embedding_csv_read(ef);
  EXPECT_EQ(back.ids, (std::vector<int64_t>{0, 2, 5}));
  EXPECT_TRUE(torch::allclose(back.x, e, 1e-6, 1e-6));  // %.7g
}

// Gaussian blobs of known width at known positions in noise: the measured extent radius is
// where the Gaussian falls to 10 %, sigma sqrt(2 ln 10), and the box follows the rule (3 r to a
// multiple of 8, at least 16, at most the probe). Noise alone, or no particles: refused.
TEST(Embedding, ParticleSizeIsWhereTheMeanFallsToTenPercent) {
  torch::manual_seed(11);
  const int64_t n = 128;  // blobs 40 voxels apart: a 48-voxel box sees no neighbour
  auto r1 = torch::arange(n, torch::kDouble);
  ParticleTable t;
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 3; ++j) t.xyz.push_back({double(24 + 40 * i), double(24 + 40 * j), 64.0});
  }
  for (double sigma : {2.5, 5.0}) {
    auto vol = torch::zeros({n, n, n}, torch::kDouble);
    for (const auto& p : t.xyz) {
      auto d2 = (r1 - p[2]).pow(2).view({-1, 1, 1}) + (r1 - p[1]).pow(2).view({1, -1, 1}) +
                (r1 - p[0]).pow(2).view({1, 1, -1});
      vol += (-d2 / (2 * sigma * sigma)).exp();
    }
    vol = (vol + 0.05 * torch::randn_like(vol)).to(torch::kFloat);
    const ParticleSize s = particle_size_measure(vol, t, 48);
    const double want = sigma * std::sqrt(2 * std::log(10.0));
    EXPECT_NEAR(s.radius, want, 0.4) << "sigma " << sigma;
    EXPECT_GT(s.contrast, 0.9);
    const int64_t box = std::max<int64_t>(16, std::llround(3 * want / 8) * 8);
    EXPECT_EQ(s.box, std::min<int64_t>(box, 48)) << "sigma " << sigma;
    // dark particles (negative contrast) measure the same
    const ParticleSize neg = particle_size_measure(-vol, t, 48);
    EXPECT_NEAR(neg.radius, s.radius, 1e-6);
    EXPECT_LT(neg.contrast, -0.9);
  }
  EXPECT_THROW(particle_size_measure(torch::randn({n, n, n}), ParticleTable{{{40, 40, 40}}, {}}, 32),
               ValueError);
  EXPECT_THROW(particle_size_measure(torch::randn({n, n, n}), ParticleTable{}, 32), ValueError);
}

// embed_boxes with flips: a box and its wedge-keeping flips get one and the same vector, which
// without flips they do not; the mean over the flips is the mean of the four embeddings.
TEST(Methods, EmbedBoxesWithFlipsIsTheSameForEveryWedgeKeepingFlip) {
  torch::set_num_threads(1);
  torch::manual_seed(5);
  auto m = method_create("mae", kTinyMae);
  m->train(false);
  Embedder& e = method_embedder(*m);
  e.set_pool("concat");
  auto x = torch::randn({2, 1, 8, 8, 8});
  auto ref = embed_boxes(e, x, true);
  for (const auto& dims : wedge_keeping_flips()) {
    if (dims.empty()) continue;
    EXPECT_TRUE(torch::allclose(embed_boxes(e, x.flip(dims), true), ref, 1e-4, 1e-5));
    EXPECT_FALSE(torch::allclose(e.embed(x.flip(dims)), e.embed(x), 1e-3, 1e-3));
  }
  auto sum = e.embed(x) + e.embed(x.flip({3})) + e.embed(x.flip({2, 4})) + e.embed(x.flip({2, 3, 4}));
  EXPECT_TRUE(torch::allclose(ref, sum / 4, 1e-5, 1e-6));
  EXPECT_TRUE(torch::equal(embed_boxes(e, x, false), e.embed(x)));
}
