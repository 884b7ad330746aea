// UNet3d: shapes, padding, options round trip, and the receptive field against a gradient
// measurement of a randomly initialised network.
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/nn/unet3d.h"

using namespace unwedge;

TEST(UNet3d, OutputShapeForOptionCombinations) {
  torch::manual_seed(1);
  std::vector<UNet3dOptions> combos = {
      UNet3dOptions().depth(1).base_channels(2),
      UNet3dOptions().depth(2).base_channels(4).downsample(UNetDownsample::strided)
          .norm(UNetNorm::instance).activation(UNetActivation::gelu),
      UNet3dOptions().depth(2).base_channels(4).norm(UNetNorm::group).norm_groups(3)
          .activation(UNetActivation::silu).dropout(0.1),
      UNet3dOptions().depth(2).base_channels(4).norm(UNetNorm::batch).kernel_size(5)
          .convs_per_level(1).activation(UNetActivation::relu),
      UNet3dOptions().depth(2).base_channels(4).in_channels(2).out_channels(3),
      UNet3dOptions().depth(2).base_channels(4).latent_channels(2),
  };
  for (const auto& o : combos) {
    UNet3d net(o);
    auto x = torch::randn({2, o.in_channels(), 8, 12, 16});
    auto y = net->forward(x);
    EXPECT_EQ(y.sizes(), torch::IntArrayRef({2, o.out_channels(), 8, 12, 16}))
        << unet3d_options_to_json(o).dump();
  }
}

TEST(UNet3d, PlanarHandlesSingleSlices) {
  torch::manual_seed(2);
  UNet3d net(UNet3dOptions().depth(2).base_channels(4).planar(true));
  auto y = net->forward(torch::randn({3, 1, 1, 8, 12}));  // tilt images
  EXPECT_EQ(y.sizes(), torch::IntArrayRef({3, 1, 1, 8, 12}));
  EXPECT_EQ(unet3d_receptive_field(net->options())[0], 1);
}

TEST(UNet3d, RejectsIndivisibleInputAndPadsOddSizes) {
  torch::manual_seed(3);
  UNet3dOptions o = UNet3dOptions().depth(2).base_channels(4);
  UNet3d net(o);
  auto x = torch::randn({1, 1, 9, 13, 6});
  EXPECT_THROW(net->forward(x), ShapeError);
  std::array<int64_t, 3> pad{};
  auto xp = unet3d_pad_to_multiple(x, unet3d_size_multiple(o), &pad);
  EXPECT_EQ(pad, (std::array<int64_t, 3>{3, 3, 2}));
  EXPECT_EQ(xp.sizes(), torch::IntArrayRef({1, 1, 12, 16, 8}));
  // Reflect padding: the first padded plane mirrors the plane before the last.
  EXPECT_TRUE(torch::equal(xp.select(2, 9).narrow(2, 0, 13).narrow(3, 0, 6), x.select(2, 7)));
  auto y = unet3d_crop(net->forward(xp), pad);
  EXPECT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(torch::equal(unet3d_crop(xp, pad), x));
  // An axis shorter than its padding falls back to replicate.
  auto tiny = torch::randn({1, 1, 1, 4, 4});
  auto tp = unet3d_pad_to_multiple(tiny, {4, 4, 4}, &pad);
  EXPECT_EQ(tp.sizes(), torch::IntArrayRef({1, 1, 4, 4, 4}));
  EXPECT_TRUE(torch::equal(tp.select(2, 3), tiny.select(2, 0)));
}

TEST(UNet3d, OptionsJsonRoundTripAndBadValues) {
  UNet3dOptions o = UNet3dOptions().depth(4).base_channels(32).norm(UNetNorm::group)
                        .activation(UNetActivation::silu).downsample(UNetDownsample::strided)
                        .dropout(0.2).residual(false).planar(true);
  auto j = unet3d_options_to_json(o);
  EXPECT_EQ(unet3d_options_to_json(unet3d_options_from_json(j)), j);
  EXPECT_EQ(j["norm"], "group");
  EXPECT_THROW(unet3d_options_from_json({{"norm", "layer"}}), ValueError);
  EXPECT_THROW(unet3d_options_from_json({{"kernel_size", 4}}), ValueError);
  EXPECT_THROW(unet3d_options_from_json({{"depth", "three"}}), ValueError);
  try {
    unet_activation_parse("tanh");
    FAIL() << "no throw";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("leaky_relu"), std::string::npos) << e.what();
  }
}

// Support along `axis` (2 = Z, 4 = X) of the gradient of one output voxel with respect to the
// input: the inputs that output voxel depends on. Strided downsampling (linear, so the gradient
// reaches every input it depends on) and GELU (nonzero derivative almost everywhere).
static int64_t measured_extent(UNet3d& net, std::vector<int64_t> shape, int axis, int64_t at) {
  auto x = torch::randn(shape, torch::kDouble).requires_grad_(true);
  auto y = net->forward(x);
  std::vector<int64_t> idx = {0, 0, shape[2] / 2, shape[3] / 2, shape[4] / 2};
  idx[axis] = at;
  y[idx[0]][idx[1]][idx[2]][idx[3]][idx[4]].backward();
  std::vector<int64_t> other;
  for (int d = 0; d < 5; ++d)
    if (d != axis) other.push_back(d);
  auto g = x.grad().abs().sum(other);  // along `axis`
  auto nz = torch::nonzero(g > 0).flatten();
  return nz.max().item<int64_t>() - nz.min().item<int64_t>() + 1;
}

TEST(UNet3d, ReceptiveFieldMatchesGradientSupport) {
  torch::manual_seed(4);
  for (int64_t convs : {1, 2}) {
    UNet3dOptions o = UNet3dOptions().depth(2).base_channels(2).convs_per_level(convs)
                          .downsample(UNetDownsample::strided)
                          .activation(UNetActivation::gelu).residual(false);
    UNet3d net(o);
    net->to(torch::kDouble);
    auto rf = unet3d_receptive_field(o);
    int64_t widest_x = 0, widest_z = 0;
    for (int64_t p = 0; p < 4; ++p) {  // every alignment modulo 2^depth
      widest_x = std::max(widest_x, measured_extent(net, {1, 1, 4, 4, 96}, 4, 44 + p));
      widest_z = std::max(widest_z, measured_extent(net, {1, 1, 96, 4, 4}, 2, 44 + p));
    }
    EXPECT_EQ(widest_x, rf[2]) << "convs " << convs;
    EXPECT_EQ(widest_z, rf[0]) << "convs " << convs;
    EXPECT_LT(rf[2], 80);  // the measurement window (96) was not the limit
  }
}

// The low-pass skip against a direct sum: along each axis, out[i] = Σ_t w(t) in[reflect(i + t)]
// with w ∝ exp(−t²/(2 s²)), s = 1/(2π σ) voxels, |t| ≤ kLowpassSkipRadius. Two channels, each
// filtered alone; a different σ per axis.
TEST(UNet3d, LowpassSkipMatchesADirectSeparableSum) {
  torch::manual_seed(4);
  const int64_t r = kLowpassSkipRadius;
  auto x = torch::randn({1, 2, 10, 12, 14}, torch::kDouble);
  const std::array<double, 3> sigma{0.05, 0.1, 0.2};  // cycles/voxel (z, y, x)
  auto log_sigma = torch::tensor({std::log(sigma[0]), std::log(sigma[1]), std::log(sigma[2])});
  auto got = unet3d_lowpass_skip(x, log_sigma).to(torch::kDouble);
  auto reflect = [](int64_t i, int64_t n) {  // numpy/torch "reflect" (edge not repeated)
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
  };
  auto want = x.clone();
  for (int a = 0; a < 3; ++a) {
    const double s = 1.0 / (2.0 * M_PI * sigma[static_cast<size_t>(a)]);
    std::vector<double> w;
    double total = 0;
    for (int64_t t = -r; t <= r; ++t) total += w.emplace_back(std::exp(-0.5 * double(t * t) / (s * s)));
    const int64_t dim = 2 + a, n = want.size(dim);
    auto out = torch::zeros_like(want);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t t = -r; t <= r; ++t) {
        out.select(dim, i) += w[static_cast<size_t>(t + r)] / total * want.select(dim, reflect(i + t, n));
      }
    }
    want = out;
  }
  EXPECT_LT((got - want).abs().max().item<double>(), 1e-5);
}

// Axes no longer than kLowpassSkipRadius are padded by replicating the edge (reflect needs the
// pad to be shorter than the axis): a direct sum with clamped indices, along Z of length 5.
TEST(UNet3d, LowpassSkipReplicatesOnAxesShorterThanItsRadius) {
  torch::manual_seed(6);
  const int64_t r = kLowpassSkipRadius;
  auto x = torch::randn({1, 1, 5, 1, 1}, torch::kDouble);  // Y, X of length 1 are left alone
  const double sigma = 0.05, s = 1.0 / (2.0 * M_PI * sigma);
  auto got = unet3d_lowpass_skip(x, torch::full({3}, std::log(sigma))).to(torch::kDouble);
  std::vector<double> w;
  double total = 0;
  for (int64_t t = -r; t <= r; ++t) total += w.emplace_back(std::exp(-0.5 * double(t * t) / (s * s)));
  for (int64_t i = 0; i < 5; ++i) {
    double want = 0;
    for (int64_t t = -r; t <= r; ++t) {
      want += w[static_cast<size_t>(t + r)] / total *
              x[0][0][std::clamp<int64_t>(i + t, 0, 4)][0][0].item<double>();
    }
    EXPECT_NEAR(got[0][0][i][0][0].item<double>(), want, 1e-5) << "z " << i;
  }
}

// The skip's gradient in its log-widths (what training learns) against central differences.
TEST(UNet3d, LowpassSkipGradientMatchesFiniteDifferences) {
  torch::manual_seed(7);
  auto x = torch::randn({2, 1, 12, 10, 9});
  auto g = torch::randn({2, 1, 12, 10, 9});
  auto base = torch::tensor({std::log(0.05), std::log(0.1), std::log(0.2)}, torch::kFloat);
  auto ls = base.clone().requires_grad_(true);
  (unet3d_lowpass_skip(x, ls) * g).sum().backward();
  const double eps = 1e-2;
  for (int64_t a = 0; a < 3; ++a) {
    auto plus = base.clone(), minus = base.clone();
    plus[a] += eps;
    minus[a] -= eps;
    torch::NoGradGuard no_grad;
    const double fd = ((unet3d_lowpass_skip(x, plus) * g).sum().item<double>() -
                       (unet3d_lowpass_skip(x, minus) * g).sum().item<double>()) / (2 * eps);
    const double an = ls.grad()[a].item<double>();
    EXPECT_NEAR(an, fd, 1e-2 * std::max(1.0, std::abs(fd))) << "axis " << a;
  }
}

// zero_head: a residual network starts as exactly its skip path (here the low-pass), and the
// skip's kernel widens the receptive field to 2·kLowpassSkipRadius + 1.
TEST(UNet3d, ZeroHeadStartsAsTheSkipPath) {
  torch::manual_seed(5);
  auto o = UNet3dOptions().depth(1).base_channels(4).convs_per_level(1).lowpass_skip(0.1).zero_head(true);
  UNet3d net(o);
  auto x = torch::randn({1, 1, 8, 8, 8});
  auto log_sigma = torch::full({3}, std::log(0.1));
  EXPECT_TRUE(torch::allclose(net->forward(x), unet3d_lowpass_skip(x, log_sigma), 1e-6, 1e-6));
  auto plain = o;
  ASSERT_LT(unet3d_receptive_field(plain.lowpass_skip(0))[0], 2 * kLowpassSkipRadius + 1);
  EXPECT_EQ(unet3d_receptive_field(o)[0], 2 * kLowpassSkipRadius + 1);
  EXPECT_GT((UNet3d(o.zero_head(false))->forward(x) - unet3d_lowpass_skip(x, log_sigma)).abs().max().item<double>(), 1e-4);
}
