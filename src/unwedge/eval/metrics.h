// Quality metrics of a restored volume: real-space (PSNR, SSIM, Pearson CC) and Fourier-space
// (FSC by shells, CC and power inside a Fourier band, directional FSC). Pure functions of tensors.
//
// Conventions (docs/evaluation.md):
// - Volumes are [Z, Y, X] float tensors of the same shape. An optional real-space `mask`
//   (same shape, > 0.5 means inside) restricts every metric:
//   real-space metrics use only the voxels inside it; Fourier metrics are computed on the
//   volumes after subtracting their mean inside the mask and multiplying by a soft-edged copy of
//   the mask (see fourier_prepare).
// - Fourier metrics work on the rfft half-grid (torch::fft::rfftn layout, norm "ortho"); each
//   half-grid coefficient stands for itself and its Hermitian mirror (weights 1 or 2), so sums
//   equal the sums over the full FFT grid. DC is excluded (volumes are mean-subtracted).
// - Frequencies are in cycles per voxel; shell i of an FSC spans |k| in [(i-0.5)/N, (i+0.5)/N)
//   with N the smallest dimension, so shell i is at i/(N*voxel) per Å.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace unwedge {

/// y ≈ scale * x + offset, least squares.
struct AffineFit {
  double scale = 1.0;
  double offset = 0.0;
};

/// Least-squares affine fit of `x` to `y` over the voxels inside `mask` (all voxels if undefined).
AffineFit affine_fit(const at::Tensor& x, const at::Tensor& y, const at::Tensor& mask = {});

/// PSNR in dB of `x` against `gt`: 10 log10(R² / MSE), R = max − min of gt inside the mask.
/// Not affine-invariant by itself: callers fit x to gt first (affine_fit) when that is the
/// convention. Returns +inf for identical volumes.
double metric_psnr(const at::Tensor& x, const at::Tensor& gt, const at::Tensor& mask = {});

/// Pearson correlation coefficient over the voxels inside the mask (affine-invariant).
double metric_pearson_cc(const at::Tensor& x, const at::Tensor& y, const at::Tensor& mask = {});

/// SSIM parameters, as skimage.metrics.structural_similarity names them.
struct SsimOptions {
  bool gaussian_weights = true;  ///< Gaussian window (σ, truncated at 3.5σ) or uniform cube
  double sigma = 1.5;            ///< Gaussian σ in voxels
  int win_size = 7;              ///< side of the uniform window (gaussian_weights = false)
  double k1 = 0.01, k2 = 0.03;   ///< stabilising constants
  double data_range = 0.0;       ///< R in C1 = (k1 R)², C2 = (k2 R)²; 0 = max − min of gt
};

/// Fraction of voxels (inside the mask) where |gt − mean| <= z·std: the coverage of the central
/// Gaussian interval mean ± z·std (z = 1.6449 for a nominal 90 % interval).
double metric_interval_coverage(const at::Tensor& mean, const at::Tensor& std, const at::Tensor& gt,
                                double z, const at::Tensor& mask = {});

/// Spearman rank correlation of x and y (inside the mask): the Pearson CC of their ranks, ties
/// broken by position rather than averaged (meant for continuous values). NaN when either is
/// constant.
double metric_spearman_cc(const at::Tensor& x, const at::Tensor& y, const at::Tensor& mask = {});

/// Sparsification (Ilg et al. 2018): for each fraction f of `fractions` (in [0, 1)), the RMSE of
/// the voxels (inside the mask) left after removing the fraction f with the largest
/// `uncertainty`, and the oracle's, which removes the largest errors first. AUSE is the mean over
/// the fractions of (rmse_by_uncertainty − rmse_oracle) / RMSE of all voxels: 0 when the
/// uncertainty orders the errors as the errors themselves do.
struct Sparsification {
  std::vector<double> fractions, rmse_by_uncertainty, rmse_oracle;
  double ause = 0;
};
Sparsification metric_sparsification(const at::Tensor& uncertainty, const at::Tensor& abs_error,
                                     const std::vector<double>& fractions,
                                     const at::Tensor& mask = {});

/// 3D SSIM (Wang et al. 2004), population covariances, mean over the voxels whose window lies
/// inside the volume (as skimage crops the border) and inside the mask. Not affine-invariant by
/// itself (see metric_psnr).
double metric_ssim(const at::Tensor& x, const at::Tensor& gt, const at::Tensor& mask = {},
                   const SsimOptions& opts = {});

/// A soft-edged copy of a binary mask (> 0.5 inside): the binary mask blurred by a Gaussian of
/// `sigma` voxels, values in [0, 1]. sigma = 0 returns the binary mask as float.
at::Tensor mask_soften(const at::Tensor& mask, double sigma);

/// The local Gaussian average of v [Z, Y, X]: sum_u g(u) v(x + u) / sum_u g(u) over the offsets u
/// that stay inside the volume, g(u) = exp(−|u|² / 2σ²) truncated at int(3σ + 0.5) voxels per
/// axis (separable; the weights are renormalised at the borders, so a constant stays constant
/// up to the edges). sigma = 0 returns v unchanged; ValueError when sigma < 0 or not finite.
/// Used to pool a per-voxel variance estimated from few draws over a small neighbourhood.
at::Tensor gaussian_average(const at::Tensor& v, double sigma);

/// σ (voxels) of the low-pass that structure_power removes: what survives is detail finer than
/// about 2.5σ = 10 voxels (edges of particles, membranes, filaments).
constexpr double kStructureLowpassSigma = 4.0;

/// The local power of x's fine structure: gaussian_average((x − gaussian_average(x, 4))², pool)
/// for x [Z, Y, X] (kStructureLowpassSigma; pool = 0: per voxel), in x's units squared, float
/// as x. A restoration errs most where it asserts detail, and a posterior's draws under-state
/// that (bench/RESULTS.md, "Where the restoration has structure"); the sampler adds this, times
/// SampleOptions::std_structure, to the draws' variance. ValueError when pool < 0 or not finite.
at::Tensor structure_power(const at::Tensor& x, double pool);

/// The volume as Fourier metrics see it: mean inside the mask subtracted, then multiplied by
/// `soft_mask` (if defined). Returns float64 [Z, Y, X].
at::Tensor fourier_prepare(const at::Tensor& x, const at::Tensor& mask, const at::Tensor& soft_mask);

/// |k| in cycles per voxel on the rfft half-grid of `shape` [Z, Y, X]: float64 [Z, Y, X/2+1].
at::Tensor rfft_radius(std::array<int64_t, 3> shape);
/// Hermitian weights on the rfft half-grid: 2 where the mirror coefficient is not stored, else 1.
at::Tensor rfft_weights(std::array<int64_t, 3> shape);

/// Coefficients within `half_angle_deg` of a Fourier axis (0 = kz, 1 = ky, 2 = kx) on the rfft
/// half-grid; bool [Z, Y, X/2+1]. DC is included.
at::Tensor rfft_cone_mask(std::array<int64_t, 3> shape, int axis, double half_angle_deg);
/// Coefficients within `half_angle_deg` of the kx–kz plane (|ky|/|k| ≤ sin(angle)); bool.
at::Tensor rfft_xz_plane_mask(std::array<int64_t, 3> shape, double half_angle_deg);

/// Fraction of voxels whose ground truth, mapped to the restored scale by the affine fit of
/// `mean` on `gt` (restored = c gt + d, as eval_add_uncertainty does), lies in [lower, upper]:
/// the coverage of a posterior's credible bounds.
double metric_bounds_coverage(const at::Tensor& mean, const at::Tensor& lower,
                              const at::Tensor& upper, const at::Tensor& gt);

/// Fourier shell correlation curve.
struct FscCurve {
  std::vector<double> freq;      ///< shell centre, cycles per Å (shell 1 .. N/2; DC excluded)
  std::vector<double> fsc;       ///< correlation per shell (NaN where a shell is empty)
  std::vector<int64_t> n;        ///< coefficients per shell on the full FFT grid
  double voxel_size = 1.0;       ///< Å
};

/// FSC of two volumes (already prepared with fourier_prepare, or plain) over shells of the full
/// FFT grid, restricted to the half-grid coefficients where `region` is true (all if undefined).
/// FSC_i = Σ Re(A B*) / sqrt(Σ|A|² Σ|B|²) over shell i. Corners beyond |k| = 0.5 are ignored.
FscCurve fsc_curve(const at::Tensor& a, const at::Tensor& b, double voxel_size,
                   const at::Tensor& region = {});

/// Where an FSC curve first falls below a threshold.
struct FscCrossing {
  bool crossed = false;    ///< false: stays above the threshold up to the last shell
  double freq = 0.0;       ///< cycles per Å, linearly interpolated between shells
  double resolution = 0.0; ///< Å = 1 / freq; when !crossed, the last shell's resolution (a bound)
};
FscCrossing fsc_crossing(const FscCurve& c, double threshold);

/// Correlation of the Fourier coefficients of `a` and `b` inside `band` (bool, rfft half-grid),
/// DC and corners beyond |k| = 0.5 excluded: Σ Re(A B*) / sqrt(Σ|A|² Σ|B|²). Affine-invariant
/// when the inputs are mean-subtracted. NaN (undefined) when either side has no power in the
/// band: less than 1e-10 of its total power (Parseval), i.e. zero up to float rounding.
double band_cc(const at::Tensor& a, const at::Tensor& b, const at::Tensor& band);

/// Mean power per Fourier coefficient (full-grid count) of `a` inside `band`, DC and corners
/// excluded. NaN for an empty band.
double band_mean_power(const at::Tensor& a, const at::Tensor& band);

}  // namespace unwedge
