// Shared pieces of the missing-wedge methods (ddw, isonet, cryogen-map, cryogen-ot) and of the
// posterior methods built on them: per-sample wedge masks from Batch::wedge, Fourier band norms
// (Parseval-exact on the rfft half-grid), the DDW band-split loss, the measured-band data term,
// the proxy degradation T_M∘R (batched rotation, centre crop, re-wedge), wedge refill, noise
// level from half tomograms, and a frozen network snapshot for refill schedules.
//
// Norms: for a real error e [.., Z, Y, X] and a real symmetric Fourier weight W on the half-grid,
// fourier_band_mean_sq(rfftn(e), W) = (1/N) Σ_{full grid} |W(k) F e(k)|² = mean((F⁻¹[W F e])²)
// (orthonormal FFT, N = Z·Y·X). The half-grid sum counts each column 0 < kx < X/2 twice.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "unwedge/methods/method.h"
#include "unwedge/nn/unet3d.h"
#include "unwedge/ops/fourier.h"
#include "unwedge/ops/rotate.h"
#include "unwedge/ops/wedge.h"

namespace unwedge {

/// One WedgeGeometry per sample: batch.wedge has B entries, or one shared, or is empty (then the
/// default ±60°). Throws ShapeError when it has another count.
std::vector<WedgeGeometry> wedge_batch_geometries(const Batch& batch, int64_t b);

/// Measured-region masks [B, 1, Z, Y, X/2+1] for per-sample geometries (from `cache`).
torch::Tensor wedge_batch_masks(std::array<int64_t, 3> shape,
                                const std::vector<WedgeGeometry>& geoms, WedgeMaskCache& cache,
                                torch::Device device);

/// Exact measured masks of the rotated geometries M_R(k) = M(R^T k): R [B,3,3] ->
/// [B, 1, Z, Y, X/2+1] (ops' wedge_mask_rfft_rotated, per geometry group).
torch::Tensor wedge_batch_masks_rotated(std::array<int64_t, 3> shape,
                                        const std::vector<WedgeGeometry>& geoms,
                                        const torch::Tensor& R);

/// (1/N) Σ_full |weight · spec|² for spec = rfftn(e, ortho) [B, C, Z, Y, X/2+1] of a real
/// [B, C, Z, Y, X] volume (nx = X) and weight broadcastable to it (undefined = 1).
/// Mean over the whole batch (divides by B·C·N).
torch::Tensor fourier_band_mean_sq(const torch::Tensor& spec, const torch::Tensor& weight,
                                   int64_t nx);

/// The DDW loss split for pred, target [B, 1, Z, Y, X], the target's rotated measured mask
/// m_rot (M_R) and the input's mask m (M), both broadcastable to [B, 1, Z, Y, X/2+1]:
///   both   = ‖M_R·M·F e‖² / N       (band both halves saw: denoising)
///   wedge  = ‖M_R·(1−M)·F e‖² / N   (band only the target saw: wedge filling)
///   total  = both + lambda · wedge,  e = pred − target, means over the batch.
struct DdwLossTerms {
  torch::Tensor total, both, wedge;
};
DdwLossTerms ddw_loss(const torch::Tensor& pred, const torch::Tensor& target,
                      const torch::Tensor& m_rot, const torch::Tensor& m, double lambda);

/// Data term on the measured band: ‖M·(F x̂ − F y)‖² / N per sample, divided by sigma2 [B]
/// (undefined = 1), mean over the batch. x_hat, y [B, 1, Z, Y, X]; m as in ddw_loss.
torch::Tensor wedge_data_term(const torch::Tensor& x_hat, const torch::Tensor& y,
                              const torch::Tensor& m, const torch::Tensor& sigma2);

/// Noise variance per sample from two halves with independent noise: var(even − odd) / 2 ->
/// [B] (detached, clamped to >= 1e-8).
torch::Tensor noise_variance_from_halves(const torch::Tensor& even, const torch::Tensor& odd);

/// Central crop of the last three dims to `size` (each <= the input's).
torch::Tensor center_crop3(const torch::Tensor& v, std::array<int64_t, 3> size);

/// The largest cube edge n <= floor(P / √2) (P = the patch's smallest edge) that is a multiple
/// of `multiple`: a centre crop of that size of a patch rotated about its centre has no empty
/// corners. Throws ShapeError (naming the patch and the multiple) when none is >= multiple.
int64_t rotation_crop_size(std::array<int64_t, 3> patch, int64_t multiple);

/// n Haar-random rotations [n,3,3] (float32 on `device`) from torch's default CPU generator.
torch::Tensor wedge_random_rotations(int64_t n, torch::Device device);

/// Which rotations a wedge method draws for its proxy T_M∘R (method option "rotations").
///  haar : Haar-uniform on SO(3), trilinear resampling, centre crop (no empty corners)
///  cube : the exact cube rotations that move the wedge (wedge_moving_cube_rotations); no
///         interpolation, and no crop needed
///  mix  : per sample, haar or cube with probability 1/2
enum class WedgeRotations { haar, cube, mix };

/// "haar" | "cube" | "mix"; ValueError naming `method` and the value otherwise.
WedgeRotations wedge_rotations_parse(const std::string& s, const std::string& method);

/// The fraction of g's missing region that a rotation R [3,3] moves into the rotated measured
/// region, |(1−M)·M_R| / |1−M|, counted on the full frequency grid of `shape` (exact masks, no
/// interpolation). 0: R keeps the wedge where it was; 1: the rotated target has data wherever
/// the input has none.
double wedge_moved_fraction(std::array<int64_t, 3> shape, const WedgeGeometry& g,
                            const torch::Tensor& R);

/// The cube rotations that keep `shape` and move at least `min_fraction` of g's missing region
/// (wedge_moved_fraction on a 32³ grid, cached per geometry by the caller). For ±60° the 24
/// rotations move 0 (4), 1/3 (4: 90° about Z), 0.61 (4), 0.89 (8) and 1.0 (4); min_fraction
/// 0.5 keeps 16. Empty when none does (e.g. ±90°).
std::vector<CubeRotation> wedge_moving_cube_rotations(std::array<int64_t, 3> shape,
                                                      const WedgeGeometry& g,
                                                      double min_fraction);

/// One rotation per sample: the matrices R [B,3,3] (float32) and, for samples drawn from the
/// cube set, the exact cube rotation (applied by index permutation instead of resampling).
struct WedgeRotationDraw {
  torch::Tensor R;
  std::vector<std::optional<CubeRotation>> cube;
};

/// Draws rotations per sample from a WedgeRotations set (torch's default CPU generator), caching
/// the wedge-moving cube rotations per geometry and patch shape. Falls back to Haar for a sample
/// whose geometry has no wedge-moving cube rotation.
class WedgeRotationSampler {
 public:
  WedgeRotationSampler(WedgeRotations set, double min_fraction);
  WedgeRotationDraw draw(std::array<int64_t, 3> shape, const std::vector<WedgeGeometry>& geoms,
                         torch::Device device);
  WedgeRotations set() const { return set_; }
  /// The cube rotations drawn from for `g` and `shape` (cached).
  const std::vector<CubeRotation>& cube_choices(std::array<int64_t, 3> shape,
                                                const WedgeGeometry& g);

 private:
  WedgeRotations set_;
  double min_fraction_;
  std::mutex mu_;
  std::map<std::string, std::vector<CubeRotation>> cache_;
};

/// Edge of the rotated volumes a wedge method's proxy works on, for a patch: the rotation crop
/// (rotation_crop_size) when `crop` is on and `set` is not cube (Haar rotations leave empty
/// corners), else the patch's own edge (cube rotations keep the whole patch), in which case the
/// patch must be cubic: ShapeError naming `method` and the patch otherwise.
int64_t wedge_rotated_edge(std::array<int64_t, 3> patch, bool crop, WedgeRotations set,
                           int64_t multiple, const std::string& method);

/// Rotates x [B, C, P, P, P] per sample as drawn (cube: exact; Haar: trilinear about the centre)
/// and centre-crops the result to crop³ (0 = no crop). Keeps the graph.
torch::Tensor wedge_rotate(const torch::Tensor& x, const WedgeRotationDraw& d, int64_t crop);

/// Proxy degradation T_M(crop(R x)): rotates x [B, 1, P, P, P] by R [B,3,3] (trilinear, about
/// the centre), crops the centre to `crop` (0 = no crop) and applies the measured mask m
/// ([B, 1, n, n, n/2+1] of the cropped size). Returns {R x cropped, T_M of it}.
std::pair<torch::Tensor, torch::Tensor> wedge_proxy_degrade(const torch::Tensor& x,
                                                            const torch::Tensor& R,
                                                            int64_t crop, const torch::Tensor& m);

/// Wedge refill: measured band from y, missing band from f: F⁻¹[M F y + (1−M) F f].
torch::Tensor wedge_refill(const torch::Tensor& y, const torch::Tensor& f, const torch::Tensor& m);

/// Noise like the observations' for pseudo-observations: T_M(ξ) scaled so its per-voxel variance
/// is sigma2 [B] (ξ white Gaussian). shape_like [B, 1, Z, Y, X]; m the measured masks.
torch::Tensor wedge_matched_noise(const torch::Tensor& shape_like, const torch::Tensor& m,
                                  const torch::Tensor& sigma2);

/// Half-map FSC sums of a batch per radial shell: [3, S] float64 on the CPU (rows Σ Re(A B*),
/// Σ|A|², Σ|B|² with A, B the orthonormal spectra of a, b [B, 1, P, P, P]), over the half-grid
/// coefficients where m [B, 1, P, P, P/2+1] is non-zero, each counted with its mirror. Shell i
/// holds |k| in [(i − ½)/P, (i + ½)/P) cycles/voxel, i = 0 .. P/2 (corners beyond ½ left out).
/// Sums, so that they can be averaged over steps before the ratio is taken.
torch::Tensor halves_fsc_sums(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& m);

/// Where the FSC of such sums of halves with smallest edge `p`, num / √(Σ|A|² Σ|B|²), first falls
/// below `threshold`, in cycles/voxel (shell i at i/p, linear between shells, FSC 1 at DC; empty
/// shells skipped); `none` when it never does.
double halves_fsc_crossing(const torch::Tensor& sums, int64_t p, double threshold, double none);

/// Low-pass with a raised-cosine edge: F⁻¹[h(|k|) F v] for v [..., Z, Y, X], h = 1 below
/// cutoff − width/2, 0 above cutoff + width/2 and cos² between (½ at the cutoff), |k| in
/// cycles/voxel. Differentiable (the prior's filter).
torch::Tensor lowpass_cosine(const torch::Tensor& v, double cutoff, double width);

/// A frozen copy of a UNet3d, refreshed on a schedule: refresh(net, step, every) copies the
/// weights when step / every changed since the last copy (so resumed runs refresh too).
class NetSnapshot {
 public:
  /// True when a copy has been taken (the refill may be used).
  bool ready() const { return copy_.get() != nullptr; }
  void refresh(const UNet3d& net, int64_t step, int64_t every);
  /// Forces a copy now (after load()).
  void take(const UNet3d& net);
  /// Runs the frozen network (no gradients, eval mode) on x padded to its size multiple.
  torch::Tensor run(const torch::Tensor& x);

 private:
  UNet3d copy_{nullptr};
  int64_t bucket_ = -1;
};

}  // namespace unwedge
