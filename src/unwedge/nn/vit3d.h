// ViT3d: a 3D Vision Transformer for masked autoencoding (MAE, He et al. 2021, in 3D).
//
// A volume [B, 1, Z, Y, X] (each edge a multiple of `patch`) is cut into N = (Z/p)(Y/p)(X/p)
// non-overlapping p^3 patches, embedded by a Conv3d with kernel = stride = p, and given fixed
// 3D sin-cos position embeddings. The encoder (pre-norm transformer blocks) sees only the tokens
// it is given (the visible ones, by index); the light decoder gets the encoded tokens scattered
// back to their positions, a learned mask token everywhere else, its own position embeddings,
// and predicts every patch's p^3 voxels.
//
// Token order is row-major over the patch grid (pz, py, px), the same order vit3d_patchify uses.
#pragma once
#include <array>
#include <cstdint>

#include <torch/torch.h>

namespace unwedge {

struct ViT3dOptions {
  /// Patch edge p, voxels (tokens are p^3 cubes).
  TORCH_ARG(int64_t, patch) = 8;
  /// Encoder width (multiple of 6: the 3D sin-cos embedding splits it over 3 axes x sin/cos).
  TORCH_ARG(int64_t, dim) = 96;
  /// Encoder transformer blocks.
  TORCH_ARG(int64_t, depth) = 4;
  /// Encoder attention heads (divides dim).
  TORCH_ARG(int64_t, heads) = 4;
  /// Decoder width (multiple of 6).
  TORCH_ARG(int64_t, decoder_dim) = 48;
  /// Decoder transformer blocks.
  TORCH_ARG(int64_t, decoder_depth) = 2;
  /// Decoder attention heads (divides decoder_dim).
  TORCH_ARG(int64_t, decoder_heads) = 4;
  /// Hidden width of each block's MLP relative to the block width.
  TORCH_ARG(double, mlp_ratio) = 4.0;
};

/// Validates options; throws ValueError naming the offending value.
void vit3d_check(const ViT3dOptions& o);

/// x [B, C, Z, Y, X] -> [B, N, C*p^3] (patch-major, row-major patch grid). Throws ShapeError
/// when an edge is not a multiple of p.
torch::Tensor vit3d_patchify(const torch::Tensor& x, int64_t p);
/// The inverse of vit3d_patchify: t [B, N, C*p^3] -> [B, C, gz*p, gy*p, gx*p].
torch::Tensor vit3d_unpatchify(const torch::Tensor& t, int64_t p, std::array<int64_t, 3> grid,
                               int64_t channels = 1);

/// Fixed 3D sin-cos position embeddings [gz*gy*gx, dim] (float32 on `device`): each axis gets
/// dim/3 channels, half sin and half cos of the patch index at geometric frequencies.
torch::Tensor vit3d_sincos_embedding(std::array<int64_t, 3> grid, int64_t dim,
                                     torch::Device device);

/// One pre-norm transformer block: x + MHA(LN(x)), then x + MLP(LN(x)). x [B, L, D].
class ViTBlockImpl : public torch::nn::Module {
 public:
  ViTBlockImpl(int64_t dim, int64_t heads, double mlp_ratio);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  int64_t heads_;
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr};
  torch::nn::Linear qkv_{nullptr}, proj_{nullptr}, fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(ViTBlock);

class ViT3dImpl : public torch::nn::Module {
 public:
  explicit ViT3dImpl(const ViT3dOptions& options = {});

  /// Encodes x [B, 1, Z, Y, X]. `keep` [B, K] (int64 token indices) selects the tokens the
  /// transformer sees; undefined = all N. Returns [B, K, dim] (after the final LayerNorm).
  torch::Tensor encode(const torch::Tensor& x, const torch::Tensor& keep = {});
  /// Decodes latent [B, K, dim] whose tokens sit at `keep` [B, K] (undefined = all N in order)
  /// on a patch grid `grid`; returns per-patch voxel predictions [B, N, p^3].
  torch::Tensor decode(const torch::Tensor& latent, const torch::Tensor& keep,
                       std::array<int64_t, 3> grid);
  /// Patch grid of x [B, 1, Z, Y, X] (checks divisibility by p).
  std::array<int64_t, 3> grid_of(const torch::Tensor& x) const;

  const ViT3dOptions& options() const { return options_; }

 private:
  ViT3dOptions options_;
  torch::nn::Conv3d patch_embed_{nullptr};
  torch::nn::ModuleList blocks_, decoder_blocks_;
  torch::nn::LayerNorm norm_{nullptr}, decoder_norm_{nullptr};
  torch::nn::Linear decoder_embed_{nullptr}, decoder_pred_{nullptr};
  torch::Tensor mask_token_;  // [1, 1, decoder_dim]
};
TORCH_MODULE(ViT3d);

}  // namespace unwedge
