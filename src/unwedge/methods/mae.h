// mae: 3D masked autoencoding (He et al. 2021 in 3D) on a single tomogram.
//
// Patch mode (mask_mode=patch): a random mask_ratio of the p^3 patches is hidden, the ViT3d
// encoder sees the visible ones only, the decoder predicts every patch, and the loss is the MSE
// on the hidden patches (per-patch normalised targets with norm_pix).
// Wedge mode (mask_mode=wedge): a Fourier double wedge of width wedge_width_deg, at a random
// orientation, is removed from the input (input = T_M'(x)); the encoder sees every patch and the
// loss is the squared Fourier error on the frequencies the mask hid but the data holds
// ((1 - M') . M_data).
// restore(): patch mode fills every patch in turn (restore_passes passes whose hidden sets are
// disjoint and cover all patches; each patch is taken from the pass that hid it); wedge mode
// keeps the measured frequencies of the input and takes the missing wedge from the prediction.
// embed(): the mean of the encoder's tokens over all patches.
// net=unet replaces the ViT by a 3D U-Net (patch mode: the volume with the hidden voxels zeroed
// and the voxel mask in, the volume out; wedge mode: the wedged volume in, residual), the same
// masks and losses; it restores but has no token embedding. mask_ratio_min / wedge_width_min_deg
// draw each batch's ratio / width uniformly up to mask_ratio / wedge_width_deg (one model for
// every ratio, as `demo-mask` trains them); with net=unet each sample draws its own ratio
// (ratio_per_sample: stratified over the range, denser at the low end with ratio_draw=low) and
// the loss is the mean of the samples' log(MSE + 0.01) (sample_loss=log), so lightly masked
// samples, whose errors are small, are not drowned by heavily masked ones.
#pragma once
#include <array>
#include <cstdint>

#include <torch/torch.h>

#include "unwedge/methods/method.h"

namespace unwedge {

MethodInfo mae_method_info();

/// For each of b samples, a random permutation of n tokens split into the kept (visible) ones
/// [b, n - round(ratio * n)] and the hidden ones [b, round(ratio * n)] (each sorted ascending).
/// Throws ValueError when nothing stays visible or ratio is outside [0, 1).
struct MaeMask {
  torch::Tensor keep;    ///< [B, K] int64
  torch::Tensor hidden;  ///< [B, N] float 0/1, 1 = hidden
};
MaeMask mae_random_mask(int64_t b, int64_t n, double ratio, torch::Device device);

/// MAE loss: mean over hidden patches of the per-patch MSE between pred and target
/// [B, N, P] (hidden [B, N], 1 = hidden). With norm_pix, each target patch is standardised
/// (mean 0, variance 1 over its P voxels, eps 1e-6) first.
torch::Tensor mae_loss(const torch::Tensor& pred, const torch::Tensor& target,
                       const torch::Tensor& hidden, bool norm_pix);

}  // namespace unwedge

namespace unwedge {

/// For demos and diagnostics, on a method created as "mae" (ValueError otherwise):
/// the reconstruction of x [B, 1, Z, Y, X] (edges multiples of the patch) when only the tokens
/// `keep` [B, K] are visible: visible patches are copied from x, hidden ones predicted. With
/// flips, the prediction is the mean over the 8 axis flips of the volume and its mask (each
/// prediction flipped back).
torch::Tensor mae_reconstruct_patches(Method& m, const torch::Tensor& x, const torch::Tensor& keep,
                                      bool flips = false);
/// The decoder's prediction of every patch of x from all tokens: [B, 1, Z, Y, X].
torch::Tensor mae_predict(Method& m, const torch::Tensor& x);
/// The model's patch edge.
int64_t mae_patch(Method& m);

}  // namespace unwedge
