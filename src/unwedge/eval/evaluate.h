// The metric sets `unwedge eval` reports: against a ground truth, or between two restored
// halves (no ground truth). Results are JSON objects (schema in docs/evaluation.md) with a
// readable terminal table.
#pragma once
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "unwedge/eval/metrics.h"
#include "unwedge/ops/wedge.h"

namespace unwedge {

struct EvalOptions {
  WedgeGeometry wedge;               ///< tilt range defining the measured and wedge bands
  double deep_margin_deg = 10.0;     ///< the deep wedge band starts this far past the tilt limit
  double cone_half_angle_deg = 30.0; ///< half-angle of the directional-FSC cones and XZ slab
  double mask_soft_sigma = 2.0;      ///< soft edge (voxels) of the mask for Fourier metrics
  SsimOptions ssim;                  ///< SSIM window (skimage conventions)
  double voxel_size = 1.0;           ///< Å per voxel, for FSC resolutions
};

/// Metrics of `restored` against `gt` (same shape [Z, Y, X]); `mask` (optional, same shape,
/// > 0.5 inside) restricts every metric. JSON: mode "truth", metrics, fsc, directional_fsc,
/// conventions.
nlohmann::json eval_against_truth(const at::Tensor& restored, const at::Tensor& gt,
                                  const at::Tensor& mask, const EvalOptions& opts);

/// Calibration of a posterior (mean `restored`, per-voxel `std`) against `gt`, both mapped to
/// gt's scale by inverting the least-squares fit restored ≈ c·gt + d (std divided by |c|): "coverage_90" (fraction of voxels inside the
/// nominal 90 % Gaussian interval; ≈ 0.9 when calibrated), "coverage_50", "coverage_80",
/// "coverage_95", "std_error_cc" (Pearson CC of std with |error|; > 0 when the std points at
/// the errors), "std_error_spearman" (its rank correlation) and "ause" (metric_sparsification
/// over the fractions 0, 0.05, ..., 0.95) in result["metrics"] of an eval_against_truth
/// result; the reliability diagram (nominal vs empirical coverage) and the sparsification
/// curves in result["uncertainty"].
///
/// `level_z`: the interval each level is stated with, mean ± level_z[k]·std for the masses
/// 50/80/90/95 % (a data-only calibration's, infer/calibrate.h); empty: the Gaussian z. The
/// coverage_P keys and the reliability diagram are those intervals'; coverage_gaussian_P are
/// always the Gaussian intervals'. ValueError when level_z is neither empty nor 4 values > 0.
void eval_add_uncertainty(nlohmann::json& result, const at::Tensor& restored, const at::Tensor& std,
                          const at::Tensor& gt, const at::Tensor& mask,
                          const std::vector<double>& level_z = {});

/// A posterior restricted to one Fourier band of the tilt geometry `g`: `band` is
/// "measured_band" (the tilt range's Fourier mask, DC included) or "wedge_band" (its
/// complement); mean band-passed, std the population spread of the band-passed draws (equal
/// weights) with its variance averaged over `std_pool` voxels (gaussian_average), plus
/// `std_structure` times the local power of the whole mean's fine structure (structure_power,
/// pooled the same: the sampler's error model, infer/sample.h). float64 [Z, Y, X]. ValueError
/// with fewer than two draws, an unknown band, std_pool < 0 or std_structure < 0.
struct BandPosterior {
  at::Tensor mean, std;
};
BandPosterior posterior_band(const at::Tensor& mean, const std::vector<at::Tensor>& draws,
                             const WedgeGeometry& g, const std::string& band, double std_pool,
                             double std_structure = 0);

/// x [Z, Y, X] restricted to `band` ("measured_band" | "wedge_band") of `g`, float64.
at::Tensor band_pass(const at::Tensor& x, const WedgeGeometry& g, const std::string& band);

/// Per-band calibration of a posterior from its draws (each [Z, Y, X] like gt): for the measured
/// band and the missing wedge of opts.wedge, the volumes restricted to the band (Fourier mask),
/// the std the spread of the band-passed draws with equal weights, its variance averaged over
/// a Gaussian neighbourhood of `std_pool` voxels (as sample pools std.mrc's; 0: per voxel), plus
/// `std_structure` times the structure power of `restored` (posterior_band), times
/// `std_scale` (the factor sample applied to std.mrc), mapped to gt's scale by the fit of the
/// whole volume as in eval_add_uncertainty, intervals per level as `level_z_measured` and
/// `level_z_wedge` say for each band (as `level_z` there: empty = Gaussian); adds
/// coverage_P_BAND, coverage_gaussian_P_BAND, std_error_cc_BAND, std_error_spearman_BAND,
/// ause_BAND (BAND: measured_band, wedge_band) to result["metrics"] and the curves to
/// result["uncertainty"]["bands"][BAND]. ValueError with fewer than two draws.
void eval_add_band_uncertainty(nlohmann::json& result, const at::Tensor& restored,
                               const std::vector<at::Tensor>& draws, double std_scale,
                               const at::Tensor& gt, const EvalOptions& opts, double std_pool = 0,
                               const std::vector<double>& level_z_measured = {},
                               const std::vector<double>& level_z_wedge = {},
                               double std_structure = 0);

/// Metrics of two independently restored halves (no ground truth): half-map FSC and its
/// crossings, wedge/measured power ratio of their average, directional FSC. JSON mode "halves".
nlohmann::json eval_halves(const at::Tensor& half1, const at::Tensor& half2,
                           const at::Tensor& mask, const EvalOptions& opts);

/// An FSC curve as JSON {"freq_per_A": [...], "fsc": [...], "n": [...]} and back.
nlohmann::json fsc_to_json(const FscCurve& c);
FscCurve fsc_from_json(const nlohmann::json& j);

/// The terminal table of an eval result: one metric per line with its value, unit and whether
/// it is affine-invariant.
std::string eval_table(const nlohmann::json& result);

/// Description of a metric key ("psnr_db" -> "PSNR after affine fit to gt, dB"); the key itself
/// when unknown. Used by the table and the report.
std::string eval_metric_label(const std::string& key);

}  // namespace unwedge
