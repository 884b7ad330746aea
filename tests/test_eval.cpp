// Tests of eval: metrics against brute-force loops and scikit-image, FSC statistics, band CCs,
// PNG round trips, SVG plots and the report.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/eval/baselines.h"
#include "unwedge/eval/evaluate.h"
#include "unwedge/eval/metrics.h"
#include "unwedge/eval/png.h"
#include "unwedge/eval/report.h"
#include "unwedge/eval/svg.h"
#include "unwedge/io/mrc.h"
#include "unwedge/ops/wedge.h"

using namespace unwedge;
namespace fs = std::filesystem;

namespace {

// A smooth random volume (noise low-passed by a Gaussian), so that metrics have structure.
at::Tensor smooth_volume(int64_t n, int64_t seed) {
  torch::manual_seed(seed);
  at::Tensor v = torch::randn({n, n, n}, torch::kDouble);
  at::Tensor k = torch::exp(-0.5 * torch::pow(torch::arange(-4, 5, torch::kDouble) / 1.5, 2));
  k = k / k.sum();
  at::Tensor x = v.view({1, 1, n, n, n});
  x = torch::conv3d(x, k.view({1, 1, 9, 1, 1}), {}, 1, {4, 0, 0});
  x = torch::conv3d(x, k.view({1, 1, 1, 9, 1}), {}, 1, {0, 4, 0});
  x = torch::conv3d(x, k.view({1, 1, 1, 1, 9}), {}, 1, {0, 0, 4});
  return x.view({n, n, n}).contiguous();
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("unwedge_test_eval_" + name + "_" +
                                            std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

void write_raw(const fs::path& p, const at::Tensor& t) {
  at::Tensor c = t.to(torch::kDouble).contiguous();
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(c.data_ptr<double>()), c.numel() * sizeof(double));
}

// Measured mask on the half-grid by a loop over frequencies (independent of ops/wedge).
at::Tensor wedge_mask_loop(int64_t n, double tmin, double tmax) {
  int64_t nh = n / 2 + 1;
  at::Tensor m = torch::zeros({n, n, nh}, torch::kDouble);
  auto a = m.accessor<double, 3>();
  for (int64_t z = 0; z < n; ++z) {
    for (int64_t y = 0; y < n; ++y) {
      for (int64_t x = 0; x < nh; ++x) {
        double kz = (z < (n + 1) / 2 ? z : z - n), kx = x;
        double phi = std::atan2(kz, kx) * 180.0 / M_PI;
        if (phi > 90) phi -= 180;
        if (phi <= -90) phi += 180;
        a[z][y][x] = (kz == 0 || (phi >= tmin && phi <= tmax)) ? 1.0 : 0.0;
      }
    }
  }
  return m;
}

at::Tensor apply_half_mask(const at::Tensor& v, const at::Tensor& m) {
  at::Tensor f = torch::fft::rfftn(v, c10::nullopt, {-3, -2, -1}, "ortho");
  return torch::fft::irfftn(f * m, v.sizes(), {-3, -2, -1}, "ortho");
}

}  // namespace

TEST(Metrics, PsnrAndCcMatchBruteForceLoops) {
  at::Tensor gt = smooth_volume(12, 1);
  torch::manual_seed(2);
  at::Tensor x = gt + 0.1 * torch::randn_like(gt);
  at::Tensor mask = (torch::rand_like(gt) > 0.3).to(torch::kFloat);
  for (bool use_mask : {false, true}) {
    auto g = gt.accessor<double, 3>();
    auto r = x.accessor<double, 3>();
    auto mk = mask.accessor<float, 3>();
    double n = 0, sx = 0, sy = 0, lo = 1e300, hi = -1e300, se = 0;
    for (int z = 0; z < 12; ++z)
      for (int y = 0; y < 12; ++y)
        for (int i = 0; i < 12; ++i) {
          if (use_mask && mk[z][y][i] <= 0.5) continue;
          n += 1;
          sx += r[z][y][i];
          sy += g[z][y][i];
          lo = std::min(lo, g[z][y][i]);
          hi = std::max(hi, g[z][y][i]);
          se += (r[z][y][i] - g[z][y][i]) * (r[z][y][i] - g[z][y][i]);
        }
    double mx = sx / n, my = sy / n, cxy = 0, cxx = 0, cyy = 0;
    for (int z = 0; z < 12; ++z)
      for (int y = 0; y < 12; ++y)
        for (int i = 0; i < 12; ++i) {
          if (use_mask && mk[z][y][i] <= 0.5) continue;
          cxy += (r[z][y][i] - mx) * (g[z][y][i] - my);
          cxx += (r[z][y][i] - mx) * (r[z][y][i] - mx);
          cyy += (g[z][y][i] - my) * (g[z][y][i] - my);
        }
    double psnr_ref = 10 * std::log10((hi - lo) * (hi - lo) / (se / n));
    double cc_ref = cxy / std::sqrt(cxx * cyy);
    at::Tensor m = use_mask ? mask : at::Tensor();
    EXPECT_NEAR(metric_psnr(x, gt, m), psnr_ref, 1e-9);  // tolerance: float64 summation order
    EXPECT_NEAR(metric_pearson_cc(x, gt, m), cc_ref, 1e-12);
  }
}

TEST(Metrics, AffineFitRecoversScaleAndOffset) {
  at::Tensor gt = smooth_volume(10, 3);
  at::Tensor x = (gt - 0.7) / 2.5;  // gt = 2.5 x + 0.7
  AffineFit f = affine_fit(x, gt);
  EXPECT_NEAR(f.scale, 2.5, 1e-9);
  EXPECT_NEAR(f.offset, 0.7, 1e-9);
  EXPECT_NEAR(metric_pearson_cc(x, gt), 1.0, 1e-12);
}

// The coverage of credible bounds, against a brute-force count: the truth mapped to the
// restored scale by the least-squares line of mean on gt (its closed form computed here in
// double), then voxel by voxel inside [lower, upper] or not.
TEST(Metrics, BoundsCoverageMatchesABruteForceCount) {
  torch::manual_seed(5);
  at::Tensor gt = torch::randn({6, 5, 4});
  at::Tensor mean = 2.0 * gt + 0.5 + 0.3 * torch::randn({6, 5, 4});
  at::Tensor half = 0.4 * torch::rand({6, 5, 4});
  at::Tensor lower = mean - half, upper = mean + half;
  auto g = gt.to(torch::kDouble).contiguous(), m = mean.to(torch::kDouble).contiguous();
  const int64_t n = g.numel();
  const double* gp = g.data_ptr<double>();
  const double* mp = m.data_ptr<double>();
  double sg = 0, sm = 0, sgg = 0, sgm = 0;
  for (int64_t i = 0; i < n; ++i) {
    sg += gp[i];
    sm += mp[i];
    sgg += gp[i] * gp[i];
    sgm += gp[i] * mp[i];
  }
  const double c = (n * sgm - sg * sm) / (n * sgg - sg * sg), d = (sm - c * sg) / n;
  auto lo = lower.to(torch::kDouble).contiguous(), up = upper.to(torch::kDouble).contiguous();
  int64_t inside = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double x = c * gp[i] + d;
    inside += x >= lo.data_ptr<double>()[i] && x <= up.data_ptr<double>()[i];
  }
  const double cov = metric_bounds_coverage(mean, lower, upper, gt);
  EXPECT_NEAR(cov, double(inside) / double(n), 1e-12);
  EXPECT_GT(cov, 0.2);  // neither trivially 0 nor 1 for these widths
  EXPECT_LT(cov, 0.95);
  EXPECT_DOUBLE_EQ(metric_bounds_coverage(mean, mean - 100, mean + 100, gt), 1.0);
  EXPECT_THROW(metric_bounds_coverage(mean, lower, upper.slice(0, 0, 5), gt), ShapeError);
}

TEST(Metrics, SsimMatchesScikitImage) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "/usr/bin/python3 absent: SSIM interop not run";
  at::Tensor gt = smooth_volume(16, 4);
  torch::manual_seed(5);
  at::Tensor x = gt + 0.03 * torch::randn_like(gt);
  x = x.narrow(0, 0, 13).narrow(2, 0, 15).contiguous();  // non-cubic [13, 16, 15]
  at::Tensor g = gt.narrow(0, 0, 13).narrow(2, 0, 15).contiguous();
  fs::path d = temp_dir("ssim");
  write_raw(d / "a.raw", x);
  write_raw(d / "b.raw", g);
  double range = (g.max() - g.min()).item<double>();
  for (bool gaussian : {true, false}) {
    std::string cmd = "/usr/bin/python3 " UNWEDGE_SOURCE_DIR "/tests/interop/ssim_skimage.py " +
                      (d / "a.raw").string() + " " + (d / "b.raw").string() + " 13 16 15 " +
                      std::to_string(range) + (gaussian ? " gaussian" : " uniform") + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    char buf[256] = {};
    std::string out;
    while (fgets(buf, sizeof buf, p)) out += buf;
    int rc = pclose(p);
    if (WEXITSTATUS(rc) == 77) GTEST_SKIP() << "scikit-image absent: " << out;
    ASSERT_EQ(WEXITSTATUS(rc), 0) << out;
    double ref = std::stod(out);
    SsimOptions o;
    o.gaussian_weights = gaussian;
    o.data_range = std::stod(std::to_string(range));  // the value the script got
    // tolerance: float64 throughout; filter summation order differs
    EXPECT_NEAR(metric_ssim(x, g, {}, o), ref, 1e-9) << (gaussian ? "gaussian" : "uniform");
    EXPECT_GT(ref, 0.1);
    EXPECT_LT(ref, 0.99);
  }
  fs::remove_all(d);
}

TEST(Metrics, SsimOfIdenticalVolumesIsOne) {
  at::Tensor gt = smooth_volume(14, 6);
  EXPECT_NEAR(metric_ssim(gt, gt), 1.0, 1e-12);
}

TEST(Fsc, VolumeWithItselfIsOneInEveryShell) {
  at::Tensor v = smooth_volume(20, 7) + 0.1 * torch::randn({20, 20, 20}, torch::kDouble);
  FscCurve c = fsc_curve(v, v, /*voxel_size=*/2.0);
  ASSERT_EQ(c.fsc.size(), 10u);
  for (size_t i = 0; i < c.fsc.size(); ++i) EXPECT_NEAR(c.fsc[i], 1.0, 1e-12) << "shell " << i;
  EXPECT_NEAR(c.freq.back(), 0.5 / 2.0, 1e-12);  // last shell at Nyquist, 1/(2 * voxel)
  FscCrossing x = fsc_crossing(c, 0.143);
  EXPECT_FALSE(x.crossed);
  EXPECT_NEAR(x.resolution, 4.0, 1e-12);
}

TEST(Fsc, IndependentNoiseStaysWithinThreeSigma) {
  torch::manual_seed(8);
  at::Tensor a = torch::randn({40, 40, 40}, torch::kDouble);
  at::Tensor b = torch::randn({40, 40, 40}, torch::kDouble);
  FscCurve c = fsc_curve(a, b, 1.0);
  int outside = 0;
  int64_t total = 0;
  for (size_t i = 0; i < c.fsc.size(); ++i) {
    total += c.n[i];
    if (std::abs(c.fsc[i]) > 3.0 / std::sqrt(static_cast<double>(c.n[i]))) ++outside;
  }
  EXPECT_LE(outside, 1) << "of " << c.fsc.size() << " shells";
  // Every coefficient inside the Nyquist sphere is counted once on the full grid.
  EXPECT_GT(total, static_cast<int64_t>(0.9 * 4.0 / 3.0 * M_PI * 20 * 20 * 20));
  EXPECT_LT(total, static_cast<int64_t>(1.1 * 4.0 / 3.0 * M_PI * 20 * 20 * 20));
}

TEST(Fsc, CrossingIsInterpolatedBetweenShells) {
  FscCurve c;
  c.freq = {0.1, 0.2, 0.3, 0.4};
  c.fsc = {0.9, 0.7, 0.3, 0.1};
  FscCrossing x = fsc_crossing(c, 0.5);
  ASSERT_TRUE(x.crossed);
  EXPECT_NEAR(x.freq, 0.25, 1e-12);
  EXPECT_NEAR(x.resolution, 4.0, 1e-12);
}

TEST(Bands, WedgeFilteredVolumeHasNoWedgeCorrelationAndFullMeasuredCorrelation) {
  at::Tensor v = smooth_volume(16, 9) + 0.05 * torch::randn({16, 16, 16}, torch::kDouble);
  at::Tensor m = wedge_mask_loop(16, -60, 60);
  at::Tensor w = apply_half_mask(v, m);
  at::Tensor measured = m.gt(0.5), wedge = m.lt(0.5);
  EXPECT_NEAR(band_cc(v, w, measured), 1.0, 1e-9);
  EXPECT_TRUE(std::isnan(band_cc(v, w, wedge)));  // w has no power there: undefined
  EXPECT_LT(band_mean_power(w, wedge), 1e-20);
  // Noise added to the wedge only: defined and near 0 there, measured band untouched.
  torch::manual_seed(10);
  at::Tensor noise = apply_half_mask(torch::randn_like(v), wedge.to(torch::kDouble));
  EXPECT_NEAR(band_cc(v, w + noise, wedge), 0.0, 0.1);
  EXPECT_NEAR(band_cc(v, w + noise, measured), 1.0, 1e-9);
}

TEST(Evaluate, TruthModeOnWedgeFilteredTruth) {
  at::Tensor gt = smooth_volume(24, 11) + 0.02 * torch::randn({24, 24, 24}, torch::kDouble);
  EvalOptions o;
  o.wedge.tilt_min_deg = -45;
  o.wedge.tilt_max_deg = 45;
  o.voxel_size = 3.0;
  at::Tensor m = wedge_mask_rfft({24, 24, 24}, o.wedge, torch::kCPU).to(torch::kDouble);
  EXPECT_TRUE(torch::equal(m, wedge_mask_loop(24, -45, 45))) << "ops/wedge convention changed";
  torch::manual_seed(12);
  at::Tensor restored = apply_half_mask(gt, m) * 3.0 + 1.0;  // scaled and offset
  nlohmann::json r = eval_against_truth(restored.to(torch::kFloat), gt.to(torch::kFloat), {}, o);
  const auto& mt = r.at("metrics");
  EXPECT_EQ(r.at("mode"), "truth");
  EXPECT_NEAR(mt.at("cc_measured_band").get<double>(), 1.0, 1e-5);
  EXPECT_TRUE(std::isnan(mt.at("cc_wedge_band").get<double>()));  // no power in the wedge
  EXPECT_LT(mt.at("wedge_power_ratio").get<double>(), 1e-8);
  EXPECT_GT(mt.at("gt_wedge_power_ratio").get<double>(), 0.1);
  EXPECT_NEAR(r.at("affine_fit").at("scale").get<double>(), 1.0 / 3.0, 0.1);
  // The Z cone lies inside the missing wedge for ±45°: no correlation there, so Z resolution
  // is worse than X resolution.
  EXPECT_GT(mt.at("fsc_0.143_A_z").get<double>(), mt.at("fsc_0.143_A_x").get<double>());
  std::string table = eval_table(r);
  EXPECT_NE(table.find("CC in the missing-wedge band"), std::string::npos);
  EXPECT_NE(table.find("undefined"), std::string::npos);
}

TEST(Evaluate, MaskRestrictsRealSpaceMetrics) {
  at::Tensor gt = smooth_volume(16, 13);
  at::Tensor x = gt.clone();
  at::Tensor mask = torch::zeros_like(gt);
  mask.slice(0, 2, 14).slice(1, 2, 14).slice(2, 2, 14).fill_(1.0);
  torch::manual_seed(14);
  x.masked_scatter_(mask.lt(0.5), torch::randn({16 * 16 * 16}, torch::kDouble) * 10);
  EXPECT_NEAR(metric_pearson_cc(x, gt, mask), 1.0, 1e-12);
  EXPECT_LT(metric_pearson_cc(x, gt), 0.9);
  EXPECT_THROW(metric_pearson_cc(x, gt, torch::zeros_like(gt)), ValueError);
  EXPECT_THROW(metric_pearson_cc(x, gt.narrow(0, 0, 15)), ShapeError);
}

TEST(Png, GrayAndRgbRoundTripThroughLibpng) {
  Image g;
  g.width = 7;
  g.height = 5;
  g.channels = 1;
  for (int i = 0; i < 35; ++i) g.pixels.push_back(static_cast<uint8_t>(i * 7));
  Image back = png_decode(png_encode(g));
  EXPECT_EQ(back.width, 7);
  EXPECT_EQ(back.height, 5);
  EXPECT_EQ(back.channels, 1);
  EXPECT_EQ(back.pixels, g.pixels);

  at::Tensor slice = torch::linspace(0, 1, 6 * 4, torch::kDouble).view({4, 6});
  Image c = image_from_slice_colormap(slice, {0, 1}, /*zoom=*/3);
  EXPECT_EQ(c.width, 18);
  EXPECT_EQ(c.height, 12);
  fs::path d = temp_dir("png");
  png_write((d / "c.png").string(), c, /*overwrite=*/false);
  EXPECT_THROW(png_write((d / "c.png").string(), c, false), ExistsError);
  std::ifstream f(d / "c.png", std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), {});
  Image cb = png_decode(bytes);
  EXPECT_EQ(cb.width, 18);
  EXPECT_EQ(cb.height, 12);
  EXPECT_EQ(cb.channels, 3);
  EXPECT_EQ(cb.pixels, c.pixels);
  fs::remove_all(d);
}

TEST(Png, SlicesContrastAndMontage) {
  at::Tensor v = torch::arange(4 * 5 * 6, torch::kDouble).view({4, 5, 6});
  CentralSlices s = central_slices(v);
  EXPECT_EQ(s.xy.sizes(), (std::vector<int64_t>{5, 6}));
  EXPECT_EQ(s.xz.sizes(), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(s.yz.sizes(), (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(s.xy[0][0].item<double>(), 2 * 30);
  Contrast c = contrast_percentile(v, 0.0, 1.0);
  EXPECT_EQ(c.lo, 0);
  EXPECT_EQ(c.hi, 119);
  Image a = image_from_slice(s.xy, c, 2), b = image_from_slice(s.xz, c, 2);
  EXPECT_EQ(a.pixels.front(), static_cast<uint8_t>(std::lround(60.0 / 119 * 255)));
  Image m = image_montage({a, b, a}, /*cols=*/2, /*gap=*/3);
  EXPECT_EQ(m.width, 12 + 3 + 12);
  EXPECT_EQ(m.height, 10 + 3 + 10);
  at::Tensor amp = fourier_xz_log_amplitude(v.to(torch::kFloat));
  EXPECT_EQ(amp.sizes(), (std::vector<int64_t>{4, 6}));
}

TEST(Svg, LinePlotHasOneLinePerSeriesAndEscapesText) {
  PlotSeries a{"a<b", {0, 1, 2}, {0.1, 0.5, 0.9}, "", false};
  PlotSeries b{"b", {0, 1, 2, 3}, {1, NAN, 2, 3}, "", true};
  PlotOptions o;
  o.title = "FSC & more";
  o.hlines = {0.5};
  std::string s = svg_line_plot({a, b}, o);
  EXPECT_EQ(s.rfind("<svg", 0), 0u);
  EXPECT_NE(s.find("a&lt;b"), std::string::npos);
  EXPECT_NE(s.find("FSC &amp; more"), std::string::npos);
  size_t n = 0;
  for (size_t p = s.find("<polyline"); p != std::string::npos; p = s.find("<polyline", p + 1)) ++n;
  EXPECT_EQ(n, 3u);  // a, and b broken in two by its NaN
  EXPECT_THROW(svg_line_plot({PlotSeries{"x", {0, 1}, {1}, "", false}}, o), ShapeError);
}

TEST(Report, Base64MatchesRfc4648Vectors) {
  auto b64 = [](const std::string& s) {
    return base64_encode(std::vector<uint8_t>(s.begin(), s.end()));
  };
  EXPECT_EQ(b64(""), "");
  EXPECT_EQ(b64("f"), "Zg==");
  EXPECT_EQ(b64("fo"), "Zm8=");
  EXPECT_EQ(b64("foo"), "Zm9v");
  EXPECT_EQ(b64("foob"), "Zm9vYg==");
  EXPECT_EQ(b64("fooba"), "Zm9vYmE=");
  EXPECT_EQ(b64("foobar"), "Zm9vYmFy");
}

TEST(Report, LossLogSkipsATruncatedLastLineOnly) {
  fs::path d = temp_dir("log");
  {
    std::ofstream f(d / "a.jsonl");
    f << "{\"step\": 0, \"loss\": 1.5}\n{\"step\": 10, \"loss\": 1.0, \"val_loss\": 1.2}\n"
      << "{\"step\": 20, \"lo";
  }
  LossLog log = loss_log_read((d / "a.jsonl").string());
  EXPECT_EQ(log.step, (std::vector<double>{0, 10}));
  EXPECT_EQ(log.loss, (std::vector<double>{1.5, 1.0}));
  EXPECT_EQ(log.val_step, (std::vector<double>{10}));
  EXPECT_EQ(log.val_loss, (std::vector<double>{1.2}));
  {
    std::ofstream f(d / "b.jsonl");
    f << "{\"step\": 0, \"loss\": 1.5}\nnot json\n{\"step\": 20, \"loss\": 0.5}\n";
  }
  try {
    loss_log_read((d / "b.jsonl").string());
    FAIL() << "a bad line in the middle must be an error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
  fs::remove_all(d);
}

// A log with a method's loss components (cryogen-map's step_stats): every extra numeric key is a
// series by step, the trainer's bookkeeping (lr, steps_per_s, elapsed_s) is not, and the report
// draws one plot per component plus D(real) against D(fake).
TEST(Report, LossLogExtraSeriesArePlotted) {
  fs::path d = temp_dir("logx");
  {
    std::ofstream f(d / "log.jsonl");
    f << R"({"step": 10, "loss": 2.0, "lr": 0.001, "steps_per_s": 3, "elapsed_s": 1, "d_real": 0.7, "d_fake": 0.3, "energy": 1.2, "note": "x"})" "\n"
      << R"({"step": 20, "loss": 1.5, "lr": 0.001, "steps_per_s": 3, "elapsed_s": 2, "d_real": 0.6, "d_fake": 0.4, "energy": 0.9, "val_loss": 1.6})" "\n"
      << R"({"step": 30, "loss": 1.2, "d_real": 0.55})" "\n";
  }
  LossLog log = loss_log_read((d / "log.jsonl").string());
  ASSERT_EQ(log.extra.size(), 3u);  // d_fake, d_real, energy; not lr/steps_per_s/elapsed_s/note
  auto get = [&](const std::string& k) -> const LossSeries& {
    for (const auto& s : log.extra) if (s.name == k) return s;
    throw std::runtime_error("no series " + k);
  };
  EXPECT_EQ(get("d_real").step, (std::vector<double>{10, 20, 30}));
  EXPECT_EQ(get("d_real").value, (std::vector<double>{0.7, 0.6, 0.55}));
  EXPECT_EQ(get("d_fake").step, (std::vector<double>{10, 20}));
  EXPECT_EQ(get("energy").value, (std::vector<double>{1.2, 0.9}));
  EXPECT_EQ(log.loss, (std::vector<double>{2.0, 1.5, 1.2}));

  Volume v;
  v.data = torch::rand({8, 8, 8});
  mrc_write((d / "r.mrc").string(), v, MrcWriteOptions{});
  ReportInput in;
  ReportMethod m;
  m.name = "cryogen-map";
  m.restored = (d / "r.mrc").string();
  m.loss_log = (d / "log.jsonl").string();
  in.methods.push_back(m);
  std::string html = report_html(in);
  for (const char* t : {"cryogen-map: d_real", "cryogen-map: d_fake", "cryogen-map: energy",
                        "cryogen-map: D(real) and D(fake)"}) {
    EXPECT_NE(html.find(t), std::string::npos) << t;
  }
  EXPECT_EQ(html.find("cryogen-map: lr"), std::string::npos);
  EXPECT_EQ(html.find("cryogen-map: steps_per_s"), std::string::npos);
  fs::remove_all(d);
}

TEST(Report, InputJsonResolvesPathsAndRejectsUnknownKeys) {
  fs::path d = temp_dir("rjson");
  {
    std::ofstream f(d / "r.json");
    f << R"({"gt": "data/gt.mrc", "tilt_range_deg": [-50, 65], "methods": [
          {"name": "n2n", "restored": "n2n/out.mrc", "std": "/abs/std.mrc", "steps": 100}]})";
  }
  ReportInput in = report_input_read((d / "r.json").string());
  EXPECT_EQ(in.gt, (d / "data/gt.mrc").string());
  EXPECT_EQ(in.tilt_range_deg[0], -50);
  EXPECT_EQ(in.tilt_range_deg[1], 65);
  ASSERT_EQ(in.methods.size(), 1u);
  EXPECT_EQ(in.methods[0].restored, (d / "n2n/out.mrc").string());
  EXPECT_EQ(in.methods[0].std_map, "/abs/std.mrc");
  EXPECT_EQ(in.methods[0].info.at("steps"), 100);
  {
    std::ofstream f(d / "bad.json");
    f << R"({"methods": [], "gt_path": "x.mrc"})";
  }
  try {
    report_input_read((d / "bad.json").string());
    FAIL() << "unknown key accepted";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("gt_path"), std::string::npos) << e.what();
  }
  fs::remove_all(d);
}

TEST(Report, SectionsInlineTheirPngOrSvgAndRejectOtherFiles) {
  fs::path d = temp_dir("rsec");
  {
    std::ofstream f(d / "r.json");
    f << R"({"methods": [], "sections": [
          {"title": "Curves <1>", "image": "c.svg", "caption": "a & b"},
          {"title": "Demo", "image": "d.png"}, {"title": "Text only"}]})";
  }
  {
    std::ofstream f(d / "c.svg");
    f << "<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"><circle r=\"3\"/></svg>\n";
  }
  Image im;  // a 2x1 grey image, encoded by our own writer
  im.width = 2;
  im.height = 1;
  im.channels = 1;
  im.pixels = {0, 255};
  std::vector<uint8_t> png = png_encode(im);
  {
    std::ofstream f(d / "d.png", std::ios::binary);
    f.write(reinterpret_cast<const char*>(png.data()), std::streamsize(png.size()));
  }
  ReportInput in = report_input_read((d / "r.json").string());
  ASSERT_EQ(in.sections.size(), 3u);
  EXPECT_EQ(in.sections[1].image, (d / "d.png").string());
  std::string svg = report_section_html(in.sections[0]);
  EXPECT_NE(svg.find("<h2>Curves &lt;1&gt;</h2>"), std::string::npos) << svg;
  EXPECT_NE(svg.find("<svg xmlns"), std::string::npos) << svg;
  EXPECT_EQ(svg.find("<?xml"), std::string::npos) << svg;  // the prolog is dropped inside HTML
  EXPECT_NE(svg.find("a &amp; b"), std::string::npos) << svg;
  std::string img = report_section_html(in.sections[1]);
  EXPECT_NE(img.find("data:image/png;base64," + base64_encode(png)), std::string::npos);
  EXPECT_EQ(report_section_html(in.sections[2]), "<h2>Text only</h2>\n");
  ReportSection bad{"x", (d / "r.json").string(), ""};
  EXPECT_THROW(report_section_html(bad), FormatError);
  ReportSection missing{"x", (d / "none.png").string(), ""};
  EXPECT_THROW(report_section_html(missing), IoError);
  fs::remove_all(d);
}

TEST(Baselines, GaussianLowpassAttenuatesACosineByTheClosedForm) {
  // cos(2π f x) with f = 3/16 cycles/voxel along X: the filter multiplies it by exp(-f²/2σ²).
  at::Tensor x = torch::arange(16, torch::kDouble).view({1, 1, 16}).expand({8, 8, 16});
  at::Tensor v = torch::cos(2 * M_PI * 3.0 / 16.0 * x).contiguous();
  double sigma = 0.1, f = 3.0 / 16.0;
  at::Tensor lp = lowpass_gaussian(v, sigma).to(torch::kDouble);
  EXPECT_NEAR((lp - v * std::exp(-f * f / (2 * sigma * sigma))).abs().max().item<double>(), 0.0,
              1e-6);  // float32 output
  at::Tensor gt = smooth_volume(16, 15);
  torch::manual_seed(16);
  at::Tensor noisy = gt + 0.3 * torch::randn_like(gt);
  OracleLowpass o = lowpass_oracle(noisy, gt);
  EXPECT_GT(o.cc, metric_pearson_cc(noisy, gt) + 0.1);
  EXPECT_NEAR(o.cc, metric_pearson_cc(o.volume, gt), 1e-6);
}

TEST(Uncertainty, CalibratedGaussianPosteriorCoversNinetyPercent) {
  torch::manual_seed(17);
  at::Tensor gt = smooth_volume(24, 18);
  at::Tensor std = 0.05 + 0.2 * torch::rand_like(gt);
  at::Tensor mean = gt + std * torch::randn_like(gt);  // errors drawn from the stated std
  // Brute force: count voxels inside mean ± 1.645 std.
  int64_t inside = 0;
  auto g = gt.accessor<double, 3>(), mu = mean.accessor<double, 3>(), sd = std.accessor<double, 3>();
  for (int z = 0; z < 24; ++z)
    for (int y = 0; y < 24; ++y)
      for (int x = 0; x < 24; ++x) inside += std::abs(g[z][y][x] - mu[z][y][x]) <= 1.6448536269514722 * sd[z][y][x];
  EXPECT_NEAR(metric_interval_coverage(mean, std, gt, 1.6448536269514722), inside / 13824.0, 1e-12);
  nlohmann::json r;
  eval_add_uncertainty(r, mean, std, gt, {});
  // 13824 voxels: binomial sd of the coverage ≈ 0.0026; tolerance 0.015 (≈ 6 sd, plus the fit).
  EXPECT_NEAR(r["metrics"]["coverage_90"].get<double>(), 0.90, 0.015);
  EXPECT_NEAR(r["metrics"]["coverage_50"].get<double>(), 0.50, 0.02);
  EXPECT_GT(r["metrics"]["std_error_cc"].get<double>(), 0.2);
  EXPECT_NEAR(r["metrics"]["coverage_80"].get<double>(), 0.80, 0.02);
  EXPECT_NEAR(r["metrics"]["coverage_95"].get<double>(), 0.95, 0.015);
  // The reliability diagram holds the same four points.
  const auto& rel = r["uncertainty"]["reliability"];
  EXPECT_EQ(rel["nominal"], nlohmann::json({0.5, 0.8, 0.9, 0.95}));
  EXPECT_DOUBLE_EQ(rel["empirical"][2].get<double>(), r["metrics"]["coverage_90"].get<double>());
  // |error| = std |N(0, 1)|: the std orders the errors in part, so removing the most uncertain
  // voxels lowers the RMSE of the rest, less than the oracle does.
  EXPECT_GT(r["metrics"]["std_error_spearman"].get<double>(), 0.2);
  const auto& sp = r["uncertainty"]["sparsification"];
  ASSERT_EQ(sp["rmse_by_std"].size(), 20u);
  EXPECT_LT(sp["rmse_by_std"][19].get<double>(), sp["rmse_by_std"][0].get<double>());
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_LE(sp["rmse_oracle"][i].get<double>(), sp["rmse_by_std"][i].get<double>() + 1e-12);
  }
  EXPECT_GT(r["metrics"]["ause"].get<double>(), 0.0);
  // A posterior that claims half the spread undercovers.
  eval_add_uncertainty(r, mean, 0.5 * std, gt, {});
  EXPECT_LT(r["metrics"]["coverage_90"].get<double>(), 0.75);
}

// Spearman's ρ against the textbook formula 1 − 6 Σd² / (n (n² − 1)) for distinct ranks, and
// its invariance to monotone maps.
TEST(Uncertainty, SpearmanIsThePearsonCcOfRanks) {
  auto x = torch::tensor({1.0, 2.0, 3.0, 4.0, 5.0}, torch::kDouble).reshape({1, 1, 5});
  // Ranks of y: 0 1 2 4 3 (Σd² = 2).
  auto y = torch::tensor({5.0, 6.0, 7.0, 8.0, 7.5}, torch::kDouble).reshape({1, 1, 5});
  EXPECT_NEAR(metric_spearman_cc(x, y), 1.0 - 6.0 * 2.0 / (5.0 * 24.0), 1e-12);
  torch::manual_seed(3);
  auto a = torch::randn({4, 5, 6}, torch::kDouble), b = torch::randn({4, 5, 6}, torch::kDouble);
  EXPECT_NEAR(metric_spearman_cc(a, a.exp()), 1.0, 1e-12);
  EXPECT_NEAR(metric_spearman_cc(a, -a.pow(3)), -1.0, 1e-12);
  EXPECT_NEAR(metric_spearman_cc(a, b), metric_spearman_cc(a.exp(), b * 3 + 1), 1e-12);
  EXPECT_TRUE(std::isnan(metric_spearman_cc(a, torch::ones_like(a))));
}

// Sparsification on four voxels with errors 1, 2, 3, 4, computed by hand: removing by an
// uncertainty that orders the errors is the oracle (AUSE 0); the reverse order keeps the largest.
TEST(Uncertainty, SparsificationByHand) {
  auto err = torch::tensor({3.0, 1.0, 4.0, 2.0}, torch::kDouble).reshape({1, 2, 2});
  const std::vector<double> f{0.0, 0.25, 0.5, 0.75};
  const Sparsification good = metric_sparsification(err * 10, err, f);
  const std::vector<double> oracle{std::sqrt(30.0 / 4), std::sqrt(14.0 / 3), std::sqrt(5.0 / 2),
                                   1.0};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(good.rmse_oracle[i], oracle[i], 1e-12);
    EXPECT_NEAR(good.rmse_by_uncertainty[i], oracle[i], 1e-12);
  }
  EXPECT_NEAR(good.ause, 0.0, 1e-12);
  const Sparsification bad = metric_sparsification(-err, err, f);
  const std::vector<double> worst{std::sqrt(30.0 / 4), std::sqrt(29.0 / 3), std::sqrt(25.0 / 2),
                                  4.0};
  double gap = 0;
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(bad.rmse_by_uncertainty[i], worst[i], 1e-12);
    gap += worst[i] - oracle[i];
  }
  EXPECT_NEAR(bad.ause, gap / 4 / std::sqrt(30.0 / 4), 1e-12);
  EXPECT_THROW(metric_sparsification(err, err, {1.0}), ValueError);
}

// Per-band calibration from draws. Truth and draws scatter around the mean by the same white
// noise, so in each band the truth's band-passed error is distributed like the draws' band-passed
// spread and every band's coverage is near its nominal mass (64 draws: the spread is estimated,
// t with 63 degrees of freedom, so a little under). Draws that vary only inside the wedge claim
// certainty on the measured band, where the truth still differs: there the coverage collapses
// while the wedge's stays; half the spread under-covers the wedge as a Gaussian predicts.
// The local Gaussian average against a loop over every voxel's neighbours (weights
// exp(−|u|²/2σ²), |u_a| <= int(3σ + 0.5), only those inside the volume, divided by their sum).
TEST(Metrics, GaussianAverageMatchesANeighbourhoodLoop) {
  torch::manual_seed(3);
  const double sigma = 1.2;
  at::Tensor v = torch::randn({5, 7, 9}, torch::kDouble);
  at::Tensor got = gaussian_average(v, sigma);
  const int r = int(3 * sigma + 0.5);
  auto a = v.accessor<double, 3>();
  double worst = 0;
  for (int z = 0; z < 5; ++z)
    for (int y = 0; y < 7; ++y)
      for (int x = 0; x < 9; ++x) {
        double num = 0, den = 0;
        for (int dz = -r; dz <= r; ++dz)
          for (int dy = -r; dy <= r; ++dy)
            for (int dx = -r; dx <= r; ++dx) {
              const int zz = z + dz, yy = y + dy, xx = x + dx;
              if (zz < 0 || zz >= 5 || yy < 0 || yy >= 7 || xx < 0 || xx >= 9) continue;
              const double w = std::exp(-(dz * dz + dy * dy + dx * dx) / (2 * sigma * sigma));
              num += w * a[zz][yy][xx];
              den += w;
            }
        worst = std::max(worst, std::abs(got[z][y][x].item<double>() - num / den));
      }
  EXPECT_LT(worst, 1e-12);
  // A constant stays constant up to the edges; sigma 0 is the identity.
  EXPECT_TRUE(torch::allclose(gaussian_average(torch::full({4, 6, 3}, 2.5, torch::kDouble), 2.0),
                              torch::full({4, 6, 3}, 2.5, torch::kDouble), 0, 1e-12));
  EXPECT_TRUE(torch::equal(gaussian_average(v, 0), v));
  EXPECT_THROW(gaussian_average(v, -1), ValueError);
  EXPECT_THROW(gaussian_average(v.view({-1}), 1), ShapeError);
}

// Intervals stated per level (a calibration's multipliers): coverage_P counts |gt − mean| <=
// level_z·std, coverage_gaussian_P the Gaussian z's, both by a brute-force count here.
TEST(Uncertainty, StatedIntervalsPerLevel) {
  torch::manual_seed(19);
  at::Tensor gt = smooth_volume(20, 16);
  at::Tensor std = 0.05 + 0.2 * torch::rand_like(gt);
  at::Tensor u = torch::rand_like(gt) - 0.5;  // Laplace errors: heavier tailed than the std says
  at::Tensor mean = gt - std * u.sign() * (1 - 2 * u.abs()).log();
  const std::vector<double> lz{0.5, 1.4, 2.1, 2.9};
  nlohmann::json r;
  eval_add_uncertainty(r, mean, std, gt, {}, lz);
  const AffineFit fit = affine_fit(gt, mean);
  const at::Tensor e = ((mean - fit.offset) / fit.scale - gt).abs(), sd = std / std::abs(fit.scale);
  const std::vector<double> gauss{0.6744897501960817, 1.2815515655446004, 1.6448536269514722, 1.959963984540054};
  const char* names[] = {"50", "80", "90", "95"};
  for (size_t k = 0; k < 4; ++k) {
    const double want = (e <= lz[k] * sd).to(torch::kDouble).mean().item<double>();
    const double want_g = (e <= gauss[k] * sd).to(torch::kDouble).mean().item<double>();
    EXPECT_NEAR(r["metrics"][std::string("coverage_") + names[k]].get<double>(), want, 1e-12);
    EXPECT_NEAR(r["metrics"][std::string("coverage_gaussian_") + names[k]].get<double>(), want_g, 1e-12);
    EXPECT_DOUBLE_EQ(r["uncertainty"]["reliability"]["empirical"][k].get<double>(), want);
  }
  EXPECT_EQ(r["uncertainty"]["level_z"], nlohmann::json(lz));
  EXPECT_THROW(eval_add_uncertainty(r, mean, std, gt, {}, {1.0, 2.0}), ValueError);
  EXPECT_THROW(eval_add_uncertainty(r, mean, std, gt, {}, {1.0, 2.0, 0.0, 3.0}), ValueError);
}

TEST(Uncertainty, BandCoverageFromDraws) {
  torch::manual_seed(21);
  const int64_t n = 32;
  const double sigma = 0.3;
  at::Tensor mean = 2.0 + 3.0 * torch::randn({n, n, n}, torch::kDouble);
  at::Tensor gt = mean + sigma * torch::randn_like(mean);
  WedgeGeometry g{-60.0, 60.0};
  const at::Tensor wedge = wedge_mask_rfft({n, n, n}, g, torch::kCPU).gt(0.5).logical_not().to(torch::kDouble);
  auto wedge_part = [&](const at::Tensor& x) {
    return torch::fft::irfftn(torch::fft::rfftn(x) * wedge, x.sizes());
  };
  std::vector<at::Tensor> white, wedge_only;
  for (int k = 0; k < 64; ++k) {
    at::Tensor xi = sigma * torch::randn_like(mean);
    white.push_back(mean + xi);
    wedge_only.push_back(mean + wedge_part(xi));
  }
  EvalOptions o;
  o.wedge = g;
  nlohmann::json r;
  eval_add_band_uncertainty(r, mean, white, 1.0, gt, o);
  const auto& m = r["metrics"];
  for (const char* band : {"measured_band", "wedge_band"}) {
    SCOPED_TRACE(band);
    const std::string b = band;
    EXPECT_NEAR(m["coverage_90_" + b].get<double>(), 0.89, 0.03);
    EXPECT_NEAR(m["coverage_50_" + b].get<double>(), 0.495, 0.03);
    ASSERT_EQ(r["uncertainty"]["bands"][b]["reliability"]["empirical"].size(), 4u);
    EXPECT_TRUE(m.contains("ause_" + b) && m.contains("std_error_spearman_" + b));
  }
  eval_add_band_uncertainty(r, mean, wedge_only, 1.0, gt, o);
  EXPECT_LT(m["coverage_90_measured_band"].get<double>(), 0.05);
  EXPECT_NEAR(m["coverage_90_wedge_band"].get<double>(), 0.89, 0.03);
  eval_add_band_uncertainty(r, mean, wedge_only, 0.5, gt, o);
  // P(|N(0, 1)| <= 1.645 / 2) = 0.589.
  EXPECT_NEAR(m["coverage_90_wedge_band"].get<double>(), 0.589, 0.04);
  // Pooling the draws' variance over a neighbourhood: the same coverage (the spread is the same
  // everywhere), a std nearer the true one, so the 90 % coverage comes closer to 0.9 than
  // 64 draws per voxel give (0.89).
  eval_add_band_uncertainty(r, mean, white, 1.0, gt, o, /*std_pool=*/1.5);
  EXPECT_NEAR(m["coverage_90_wedge_band"].get<double>(), 0.90, 0.02);
  EXPECT_THROW(eval_add_band_uncertainty(r, mean, white, 1.0, gt, o, -1.0), ValueError);
  // Each band's stated intervals: coverage_P_wedge_band counts |gt − mean| <= z_P std there,
  // here counted from the wedge-passed volumes and the draws' population std computed directly.
  const std::vector<double> zw{0.5, 1.0, 1.5, 2.0};
  eval_add_band_uncertainty(r, mean, white, 1.0, gt, o, 0.0, {}, zw);
  const AffineFit fit = affine_fit(gt, mean);
  std::vector<at::Tensor> passed;
  for (const auto& d : white) passed.push_back(wedge_part(d));
  const at::Tensor band_sd = torch::stack(passed).std(0, /*unbiased=*/false);
  const at::Tensor err = (wedge_part(mean) / fit.scale - wedge_part(gt)).abs();
  EXPECT_NEAR(m["coverage_90_wedge_band"].get<double>(),
              (err <= 1.5 * band_sd / std::abs(fit.scale)).to(torch::kDouble).mean().item<double>(), 1e-9);
  EXPECT_EQ(r["uncertainty"]["level_z_bands"]["wedge_band"], nlohmann::json(zw));
  EXPECT_EQ(r["uncertainty"]["level_z_bands"]["measured_band"], nlohmann::json("gaussian"));
  EXPECT_THROW(band_pass(gt, g, "deep"), ValueError);
  EXPECT_THROW(eval_add_band_uncertainty(r, mean, {white[0]}, 1.0, gt, o), ValueError);
  EXPECT_THROW(eval_add_band_uncertainty(r, mean, white, 0.0, gt, o), ValueError);
}
