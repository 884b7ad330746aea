#include "unwedge/eval/evaluate.h"

#include <array>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "unwedge/core/error.h"

namespace unwedge {

namespace {

using json = nlohmann::json;

// Metric keys in table order: label, unit, affine-invariant?
struct MetricInfo {
  const char* key;
  const char* label;
  const char* unit;
  bool affine_invariant;
};
const MetricInfo kMetrics[] = {
    {"psnr_db", "PSNR (restored affinely fitted to gt; R = gt range)", "dB", true},
    {"psnr_raw_db", "PSNR (as is, no fit)", "dB", false},
    {"ssim", "SSIM 3D (restored affinely fitted to gt)", "", true},
    {"cc", "Pearson CC", "", true},
    {"fsc_0.5_A", "FSC 0.5 crossing", "A", true},
    {"fsc_0.143_A", "FSC 0.143 crossing", "A", true},
    {"cc_measured_band", "CC in the measured band", "", true},
    {"cc_wedge_band", "CC in the missing-wedge band", "", true},
    {"cc_deep_wedge_band", "CC deep in the wedge (> margin past the tilt limit)", "", true},
    {"wedge_power_ratio", "power wedge / measured band (per coefficient)", "", true},
    {"gt_wedge_power_ratio", "same ratio for the ground truth", "", true},
    {"deep_wedge_power_vs_gt", "power deep in the wedge, restored / gt (after fit)", "", true},
    {"fsc_0.143_A_x", "directional FSC 0.143, cone along X", "A", true},
    {"fsc_0.143_A_y", "directional FSC 0.143, cone along Y", "A", true},
    {"fsc_0.143_A_z", "directional FSC 0.143, cone along Z", "A", true},
    {"fsc_0.143_A_xz", "directional FSC 0.143, XZ plane slab", "A", true},
    {"anisotropy_z_over_x", "anisotropy: 0.143 resolution Z / X (1 = isotropic)", "", true},
    {"coverage_90", "posterior: gt inside the nominal 90 % interval", "", true},
    {"coverage_50", "posterior: gt inside the nominal 50 % interval", "", true},
    {"std_error_cc", "posterior: CC of std with |error|", "", true},
};

std::string g(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

double num_or_nan(const json& j) {
  return j.is_number() ? j.get<double>() : std::nan("");
}

at::Tensor bool_band(const at::Tensor& m) { return m.gt(0.5); }

// FSC curve and both crossings into `metrics` under `prefix` + suffix.
json fsc_entry(const FscCurve& c, json& metrics, const std::string& suffix) {
  json j = fsc_to_json(c);
  for (double t : {0.5, 0.143}) {
    FscCrossing x = fsc_crossing(c, t);
    std::string key = std::string("fsc_") + (t == 0.5 ? "0.5" : "0.143") + "_A" + suffix;
    if (suffix.empty() || t == 0.143) {
      metrics[key] = x.resolution;
      if (!x.crossed) metrics[key + "_is_bound"] = true;
    }
    j[t == 0.5 ? "res_0.5_A" : "res_0.143_A"] = x.resolution;
    j[t == 0.5 ? "crossed_0.5" : "crossed_0.143"] = x.crossed;
  }
  return j;
}

json directional(const at::Tensor& a, const at::Tensor& b, const EvalOptions& o, json& metrics) {
  std::array<int64_t, 3> s{a.size(0), a.size(1), a.size(2)};
  json d;
  d["half_angle_deg"] = o.cone_half_angle_deg;
  d["x"] = fsc_entry(fsc_curve(a, b, o.voxel_size, rfft_cone_mask(s, 2, o.cone_half_angle_deg)),
                     metrics, "_x");
  d["y"] = fsc_entry(fsc_curve(a, b, o.voxel_size, rfft_cone_mask(s, 1, o.cone_half_angle_deg)),
                     metrics, "_y");
  d["z"] = fsc_entry(fsc_curve(a, b, o.voxel_size, rfft_cone_mask(s, 0, o.cone_half_angle_deg)),
                     metrics, "_z");
  d["xz_plane"] = fsc_entry(
      fsc_curve(a, b, o.voxel_size, rfft_xz_plane_mask(s, o.cone_half_angle_deg)), metrics,
      "_xz");
  metrics["anisotropy_z_over_x"] =
      num_or_nan(metrics["fsc_0.143_A_z"]) / num_or_nan(metrics["fsc_0.143_A_x"]);
  return d;
}

json conventions(bool truth, bool masked, const EvalOptions& o) {
  json c;
  if (truth) {
    c["affine"] =
        "PSNR and SSIM compare a*restored+b with gt, (a, b) the least-squares fit inside the mask; "
        "CC and every Fourier metric are invariant to a and b by construction. psnr_raw_db is not.";
    c["psnr"] = "10 log10(R^2 / MSE), R = max - min of gt inside the mask";
    c["ssim"] = o.ssim.gaussian_weights
                    ? "Gaussian window sigma " + g(o.ssim.sigma) +
                          " (truncate 3.5), K1 0.01, K2 0.03, population covariance, border "
                          "cropped (skimage structural_similarity)"
                    : "uniform " + std::to_string(o.ssim.win_size) + "^3 window, border cropped";
  }
  c["fourier"] =
      "rfft (ortho) of the mean-subtracted volumes; DC and corners beyond Nyquist excluded; "
      "shells of width 1/N cycles/voxel, N the smallest dimension";
  c["bands"] = "measured band = tilt range [" + g(o.wedge.tilt_min_deg) + ", " +
               g(o.wedge.tilt_max_deg) +
               "] deg about Y; wedge band = its complement; deep wedge band = more than " +
               g(o.deep_margin_deg) + " deg past the tilt limit";
  c["mask"] = masked ? "real-space metrics use voxels with mask > 0.5; Fourier metrics use the "
                       "volumes minus their mean inside the mask, times the mask softened by a "
                       "Gaussian of sigma " +
                           g(o.mask_soft_sigma) + " voxels"
                     : "none";
  c["directional_fsc"] = "cones of half-angle " + g(o.cone_half_angle_deg) +
                         " deg about kx, ky, kz; xz = coefficients within that angle of the "
                         "kx-kz plane";
  return c;
}

json header(const char* mode, const at::Tensor& a, const at::Tensor& mask, const EvalOptions& o) {
  json r;
  r["mode"] = mode;
  r["shape_zyx"] = {a.size(0), a.size(1), a.size(2)};
  r["voxel_size_A"] = o.voxel_size;
  r["tilt_range_deg"] = {o.wedge.tilt_min_deg, o.wedge.tilt_max_deg};
  r["wedge_sign_flip"] = o.wedge.sign_flip;
  r["masked"] = mask.defined();
  return r;
}

void check_shapes(const at::Tensor& a, const at::Tensor& b, const at::Tensor& mask) {
  if (a.dim() != 3 || a.sizes() != b.sizes()) {
    throw ShapeError("eval: volumes of different shapes");
  }
  if (mask.defined() && mask.sizes() != a.sizes()) {
    throw ShapeError("eval: mask shape differs from the volumes'");
  }
}

}  // namespace

json fsc_to_json(const FscCurve& c) {
  json j;
  j["freq_per_A"] = c.freq;
  json f = json::array();
  for (double v : c.fsc) f.push_back(std::isfinite(v) ? json(v) : json(nullptr));
  j["fsc"] = f;
  j["n"] = c.n;
  j["voxel_size_A"] = c.voxel_size;
  return j;
}

FscCurve fsc_from_json(const json& j) {
  FscCurve c;
  if (!j.is_object() || !j.contains("freq_per_A") || !j.contains("fsc")) {
    throw FormatError("FSC JSON: expected an object with freq_per_A and fsc");
  }
  c.freq = j.at("freq_per_A").get<std::vector<double>>();
  for (const auto& v : j.at("fsc")) c.fsc.push_back(num_or_nan(v));
  if (c.freq.size() != c.fsc.size()) {
    throw FormatError("FSC JSON: " + std::to_string(c.freq.size()) + " frequencies but " +
                      std::to_string(c.fsc.size()) + " values");
  }
  if (j.contains("n")) c.n = j.at("n").get<std::vector<int64_t>>();
  if (j.contains("voxel_size_A")) c.voxel_size = j.at("voxel_size_A").get<double>();
  return c;
}

json eval_against_truth(const at::Tensor& restored, const at::Tensor& gt, const at::Tensor& mask,
                        const EvalOptions& o) {
  check_shapes(restored, gt, mask);
  wedge_check(o.wedge);
  json r = header("truth", gt, mask, o);
  json m;
  AffineFit fit = affine_fit(restored, gt, mask);
  at::Tensor fitted = restored.to(torch::kDouble) * fit.scale + fit.offset;
  m["psnr_db"] = metric_psnr(fitted, gt, mask);
  m["psnr_raw_db"] = metric_psnr(restored, gt, mask);
  m["ssim"] = metric_ssim(fitted, gt, mask, o.ssim);
  m["cc"] = metric_pearson_cc(restored, gt, mask);
  r["affine_fit"] = {{"scale", fit.scale}, {"offset", fit.offset}};

  at::Tensor soft = mask.defined() ? mask_soften(mask, o.mask_soft_sigma) : at::Tensor();
  at::Tensor a = fourier_prepare(restored, mask, soft), b = fourier_prepare(gt, mask, soft);
  r["fsc"] = fsc_entry(fsc_curve(a, b, o.voxel_size), m, "");

  std::array<int64_t, 3> s{gt.size(0), gt.size(1), gt.size(2)};
  at::Tensor measured = bool_band(wedge_mask_rfft(s, o.wedge, torch::kCPU));
  at::Tensor wedge = measured.logical_not();
  at::Tensor deep = bool_band(wedge_band_rfft(s, o.wedge, o.deep_margin_deg, torch::kCPU));
  m["cc_measured_band"] = band_cc(a, b, measured);
  m["cc_wedge_band"] = band_cc(a, b, wedge);
  m["cc_deep_wedge_band"] = band_cc(a, b, deep);
  m["wedge_power_ratio"] = band_mean_power(a, wedge) / band_mean_power(a, measured);
  m["gt_wedge_power_ratio"] = band_mean_power(b, wedge) / band_mean_power(b, measured);
  m["deep_wedge_power_vs_gt"] =
      fit.scale * fit.scale * band_mean_power(a, deep) / band_mean_power(b, deep);
  r["directional_fsc"] = directional(a, b, o, m);
  r["metrics"] = m;
  r["conventions"] = conventions(true, mask.defined(), o);
  return r;
}

namespace {

/// Coverage at 50/80/90/95 %, Pearson and Spearman corr(std, |error|), sparsification of a
/// posterior already on gt's scale: the metrics under the keys KEY + suffix, the curves returned.
json uncertainty_figures(json& m, const at::Tensor& mean, const at::Tensor& sd,
                         const at::Tensor& gt, const at::Tensor& mask, const std::string& suffix,
                         const std::vector<double>& level_z) {
  // Central Gaussian intervals: nominal mass p, z = Φ⁻¹((1 + p) / 2); the stated intervals use
  // level_z's multipliers when given.
  const std::array<std::pair<double, double>, 4> levels{
      {{0.5, 0.6744897501960817}, {0.8, 1.2815515655446004}, {0.9, 1.6448536269514722},
       {0.95, 1.959963984540054}}};
  json nominal = json::array(), empirical = json::array();
  for (size_t k = 0; k < levels.size(); ++k) {
    const auto& [p, z] = levels[k];
    const std::string level = std::to_string(int(std::lround(100 * p)));
    const double gauss = metric_interval_coverage(mean, sd, gt, z, mask);
    const double c = level_z.empty() ? gauss : metric_interval_coverage(mean, sd, gt, level_z[k], mask);
    m["coverage_" + level + suffix] = c;
    m["coverage_gaussian_" + level + suffix] = gauss;
    nominal.push_back(p);
    empirical.push_back(c);
  }
  const at::Tensor abs_err = (mean - gt.to(torch::kDouble)).abs();
  m["std_error_cc" + suffix] = metric_pearson_cc(sd, abs_err, mask);
  m["std_error_spearman" + suffix] = metric_spearman_cc(sd, abs_err, mask);
  std::vector<double> fractions;
  for (int i = 0; i < 20; ++i) fractions.push_back(0.05 * i);
  const Sparsification sp = metric_sparsification(sd, abs_err, fractions, mask);
  m["ause" + suffix] = sp.ause;
  return {{"reliability", {{"nominal", nominal}, {"empirical", empirical}}},
          {"sparsification",
           {{"fraction_removed", sp.fractions},
            {"rmse_by_std", sp.rmse_by_uncertainty},
            {"rmse_oracle", sp.rmse_oracle}}}};
}

/// x [Z, Y, X] restricted to the Fourier band `band` (float 0/1 on the rfft half-grid).
at::Tensor band_part(const at::Tensor& x, const at::Tensor& band) {
  const auto xd = x.to(torch::kDouble);
  return torch::fft::irfftn(torch::fft::rfftn(xd) * band, xd.sizes());
}

void check_level_z(const std::vector<double>& level_z) {
  if (level_z.empty()) return;
  bool ok = level_z.size() == 4;
  for (double z : level_z) ok = ok && z > 0 && std::isfinite(z);
  if (!ok) {
    throw ValueError("uncertainty: the intervals' multipliers per level (50/80/90/95 %) must be "
                     "4 finite values > 0, got " + json(level_z).dump());
  }
}

const char* kUncertaintyConventions =
    "coverage_P: fraction of voxels with |gt - mean| <= z std, z the stated interval's multiplier "
    "for mass P % (a data-only calibration's per level when the sampler ran one, see "
    "uncertainty.level_z; else the central Gaussian z); coverage_gaussian_P: the same with the "
    "Gaussian z; mean and std mapped to gt's scale by inverting the fit restored = c gt + d; "
    "sparsification: RMSE of the voxels left after removing the given fraction with the "
    "largest std (oracle: the largest errors); ause: mean gap between the two over the "
    "fractions 0, 0.05, ..., 0.95, over the RMSE of all voxels; std_error_spearman: rank "
    "correlation of std and |error|";

}  // namespace

void eval_add_uncertainty(json& result, const at::Tensor& restored, const at::Tensor& std,
                          const at::Tensor& gt, const at::Tensor& mask,
                          const std::vector<double>& level_z) {
  check_shapes(restored, gt, mask);
  check_shapes(std, gt, {});
  check_level_z(level_z);
  // Scale of the posterior relative to gt from restored ≈ c·gt + d (regressing gt on restored
  // would shrink noisy means towards the mean and bias the coverage down).
  AffineFit fit = affine_fit(gt, restored, mask);
  if (fit.scale == 0) throw ValueError("uncertainty: the restored volume does not vary with gt");
  at::Tensor mean = (restored.to(torch::kDouble) - fit.offset) / fit.scale;
  at::Tensor sd = std.to(torch::kDouble) / std::abs(fit.scale);
  result["uncertainty"] = uncertainty_figures(result["metrics"], mean, sd, gt, mask, "", level_z);
  result["uncertainty"]["level_z"] = level_z.empty() ? json("gaussian") : json(level_z);
  result["conventions"]["uncertainty"] = kUncertaintyConventions;
}

namespace {

/// The Fourier mask (float64 0/1 on the rfft half-grid) of `band` of `g` for volumes like x.
at::Tensor band_mask(const at::Tensor& x, const WedgeGeometry& g, const std::string& band) {
  if (band != "measured_band" && band != "wedge_band") {
    throw ValueError("band: '" + band + "' is not measured_band or wedge_band");
  }
  if (x.dim() != 3) throw ShapeError("band: [Z, Y, X] expected, got " + c10::str(x.sizes()));
  const at::Tensor measured = bool_band(wedge_mask_rfft({x.size(0), x.size(1), x.size(2)}, g, torch::kCPU));
  return (band == "measured_band" ? measured : measured.logical_not()).to(torch::kDouble);
}

}  // namespace

at::Tensor band_pass(const at::Tensor& x, const WedgeGeometry& g, const std::string& band) {
  return band_part(x, band_mask(x, g, band));
}

BandPosterior posterior_band(const at::Tensor& mean, const std::vector<at::Tensor>& draws,
                             const WedgeGeometry& g, const std::string& band, double std_pool,
                             double std_structure) {
  if (draws.size() < 2) {
    throw ValueError("band uncertainty: " + std::to_string(draws.size()) +
                     " draws (need at least 2 for a spread)");
  }
  if (!(std_pool >= 0) || !std::isfinite(std_pool)) {
    throw ValueError("band uncertainty: std pool " + std::to_string(std_pool) +
                     " voxels (need a finite value >= 0)");
  }
  if (!(std_structure >= 0) || !std::isfinite(std_structure)) {
    throw ValueError("band uncertainty: std structure " + std::to_string(std_structure) +
                     " (need a finite value >= 0)");
  }
  const at::Tensor f = band_mask(mean, g, band);
  BandPosterior b;
  b.mean = band_part(mean, f);
  // Population variance of the band-passed draws about their own mean, from running sums (one
  // band-passed draw in memory at a time).
  at::Tensor sum = torch::zeros_like(b.mean), sum_sq = torch::zeros_like(b.mean);
  for (const auto& d : draws) {
    const at::Tensor p = band_part(d, f);
    sum += p;
    sum_sq += p * p;
  }
  const double k = static_cast<double>(draws.size());
  at::Tensor var = gaussian_average((sum_sq / k - (sum / k).square()).clamp_min(0), std_pool);
  if (std_structure > 0) var = var + std_structure * structure_power(mean.to(torch::kDouble), std_pool);
  b.std = var.sqrt();
  return b;
}

void eval_add_band_uncertainty(json& result, const at::Tensor& restored,
                               const std::vector<at::Tensor>& draws, double std_scale,
                               const at::Tensor& gt, const EvalOptions& o, double std_pool,
                               const std::vector<double>& level_z_measured,
                               const std::vector<double>& level_z_wedge, double std_structure) {
  check_shapes(restored, gt, {});
  wedge_check(o.wedge);
  check_level_z(level_z_measured);
  check_level_z(level_z_wedge);
  for (const auto& d : draws) check_shapes(d, gt, {});
  if (!(std_scale > 0) || !std::isfinite(std_scale)) {
    throw ValueError("band uncertainty: std scale " + std::to_string(std_scale) +
                     " (need a finite value > 0)");
  }
  AffineFit fit = affine_fit(gt, restored, {});
  if (fit.scale == 0) throw ValueError("uncertainty: the restored volume does not vary with gt");
  json bands;
  for (const auto& [name, level_z] : std::array<std::pair<std::string, const std::vector<double>*>, 2>{
           {{"measured_band", &level_z_measured}, {"wedge_band", &level_z_wedge}}}) {
    const BandPosterior bp = posterior_band(restored, draws, o.wedge, name, std_pool, std_structure);
    // The fit's offset d is a constant: all of it lies at k = 0, in the measured band.
    const double offset = name == "measured_band" ? fit.offset : 0.0;
    at::Tensor mean = (bp.mean - offset) / fit.scale;
    at::Tensor sd = bp.std * (std_scale / std::abs(fit.scale));
    bands[name] = uncertainty_figures(result["metrics"], mean, sd, band_pass(gt, o.wedge, name), {},
                                      "_" + name, *level_z);
  }
  result["uncertainty"]["bands"] = bands;
  result["uncertainty"]["level_z_bands"] = {
      {"measured_band", level_z_measured.empty() ? json("gaussian") : json(level_z_measured)},
      {"wedge_band", level_z_wedge.empty() ? json("gaussian") : json(level_z_wedge)}};
  result["conventions"]["uncertainty_bands"] =
      "KEY_measured_band, KEY_wedge_band: the same figures for the volumes restricted to the "
      "measured band and to the missing wedge (Fourier masks of the tilt range): mean and truth "
      "band-passed, std the spread of the band-passed draws (equal weights, variance averaged "
      "over the sampler's std_pool neighbourhood, plus std_structure times the local power of "
      "the whole mean's fine structure, times the std scale), the affine fit of the "
      "whole volume, the intervals' multipliers per level of each band "
      "(uncertainty.level_z_bands: a data-only calibration's, or the Gaussian z)";
}

json eval_halves(const at::Tensor& half1, const at::Tensor& half2, const at::Tensor& mask,
                 const EvalOptions& o) {
  check_shapes(half1, half2, mask);
  wedge_check(o.wedge);
  json r = header("halves", half1, mask, o);
  json m;
  at::Tensor soft = mask.defined() ? mask_soften(mask, o.mask_soft_sigma) : at::Tensor();
  at::Tensor a = fourier_prepare(half1, mask, soft), b = fourier_prepare(half2, mask, soft);
  r["fsc"] = fsc_entry(fsc_curve(a, b, o.voxel_size), m, "");
  std::array<int64_t, 3> s{half1.size(0), half1.size(1), half1.size(2)};
  at::Tensor measured = bool_band(wedge_mask_rfft(s, o.wedge, torch::kCPU));
  at::Tensor wedge = measured.logical_not();
  at::Tensor deep = bool_band(wedge_band_rfft(s, o.wedge, o.deep_margin_deg, torch::kCPU));
  at::Tensor avg = 0.5 * (a + b);
  m["wedge_power_ratio"] = band_mean_power(avg, wedge) / band_mean_power(avg, measured);
  m["cc_measured_band"] = band_cc(a, b, measured);
  m["cc_wedge_band"] = band_cc(a, b, wedge);
  m["cc_deep_wedge_band"] = band_cc(a, b, deep);
  r["directional_fsc"] = directional(a, b, o, m);
  r["metrics"] = m;
  json c = conventions(false, mask.defined(), o);
  c["halves"] = "FSC and band CCs are between the two halves (half-map FSC: 0.143 is the usual "
                "criterion); the power ratio is of their average";
  r["conventions"] = c;
  return r;
}

std::string eval_metric_label(const std::string& key) {
  for (const auto& mi : kMetrics) {
    if (key == mi.key) return mi.label;
  }
  return key;
}

std::string eval_table(const json& r) {
  std::string out;
  char line[256];
  const json& m = r.at("metrics");
  std::snprintf(line, sizeof line, "%-58s %12s  %s\n", "metric", "value", "affine-inv.");
  out += line;
  for (const auto& mi : kMetrics) {
    if (!m.contains(mi.key)) continue;
    double v = num_or_nan(m.at(mi.key));
    bool bound = m.contains(std::string(mi.key) + "_is_bound");
    char val[64];
    if (std::isnan(v)) {
      std::snprintf(val, sizeof val, "undefined");
    } else {
      std::snprintf(val, sizeof val, "%s%.4g %s", bound ? "<=" : "", v, mi.unit);
    }
    std::snprintf(line, sizeof line, "%-58s %12s  %s\n", mi.label, val,
                  mi.affine_invariant ? "yes" : "no");
    out += line;
  }
  if (r.contains("conventions")) {
    out += "conventions:\n";
    for (auto it = r.at("conventions").begin(); it != r.at("conventions").end(); ++it) {
      out += "  " + it.key() + ": " + it.value().get<std::string>() + "\n";
    }
  }
  return out;
}

}  // namespace unwedge
