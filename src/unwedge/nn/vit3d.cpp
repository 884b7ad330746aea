// ViT3d: patch embedding, 3D sin-cos positions, pre-norm blocks, MAE encoder/decoder.
#include "unwedge/nn/vit3d.h"

#include <cmath>
#include <string>

#include "unwedge/core/error.h"

namespace unwedge {

void vit3d_check(const ViT3dOptions& o) {
  auto fail = [](const std::string& m) { throw ValueError("vit3d: " + m); };
  if (o.patch() < 1) fail("patch " + std::to_string(o.patch()) + " is not >= 1");
  if (o.dim() < 6 || o.dim() % 6 != 0) {
    fail("dim " + std::to_string(o.dim()) + " is not a positive multiple of 6");
  }
  if (o.decoder_dim() < 6 || o.decoder_dim() % 6 != 0) {
    fail("decoder_dim " + std::to_string(o.decoder_dim()) + " is not a positive multiple of 6");
  }
  if (o.heads() < 1 || o.dim() % o.heads() != 0) {
    fail("heads " + std::to_string(o.heads()) + " does not divide dim " + std::to_string(o.dim()));
  }
  if (o.decoder_heads() < 1 || o.decoder_dim() % o.decoder_heads() != 0) {
    fail("decoder_heads " + std::to_string(o.decoder_heads()) + " does not divide decoder_dim " +
         std::to_string(o.decoder_dim()));
  }
  if (o.depth() < 1) fail("depth " + std::to_string(o.depth()) + " is not >= 1");
  if (o.decoder_depth() < 1) {
    fail("decoder_depth " + std::to_string(o.decoder_depth()) + " is not >= 1");
  }
  if (!(o.mlp_ratio() > 0)) fail("mlp_ratio " + std::to_string(o.mlp_ratio()) + " is not > 0");
}

torch::Tensor vit3d_patchify(const torch::Tensor& x, int64_t p) {
  if (x.dim() != 5) throw ShapeError("vit3d_patchify: x must be [B, C, Z, Y, X], got " +
                                     c10::str(x.sizes()));
  for (int a = 2; a < 5; ++a) {
    if (x.size(a) % p != 0) {
      throw ShapeError("vit3d_patchify: size " + c10::str(x.sizes()) +
                       " is not a multiple of the patch " + std::to_string(p));
    }
  }
  const int64_t b = x.size(0), c = x.size(1);
  const int64_t gz = x.size(2) / p, gy = x.size(3) / p, gx = x.size(4) / p;
  auto t = x.reshape({b, c, gz, p, gy, p, gx, p});  // [B, C, gz, p, gy, p, gx, p]
  t = t.permute({0, 2, 4, 6, 1, 3, 5, 7});           // [B, gz, gy, gx, C, p, p, p]
  return t.reshape({b, gz * gy * gx, c * p * p * p});
}

torch::Tensor vit3d_unpatchify(const torch::Tensor& t, int64_t p, std::array<int64_t, 3> grid,
                               int64_t channels) {
  const int64_t b = t.size(0);
  if (t.dim() != 3 || t.size(1) != grid[0] * grid[1] * grid[2] ||
      t.size(2) != channels * p * p * p) {
    throw ShapeError("vit3d_unpatchify: tokens " + c10::str(t.sizes()) + " do not fit grid (" +
                     std::to_string(grid[0]) + ", " + std::to_string(grid[1]) + ", " +
                     std::to_string(grid[2]) + ") of patch " + std::to_string(p));
  }
  auto v = t.reshape({b, grid[0], grid[1], grid[2], channels, p, p, p});
  v = v.permute({0, 4, 1, 5, 2, 6, 3, 7});  // [B, C, gz, p, gy, p, gx, p]
  return v.reshape({b, channels, grid[0] * p, grid[1] * p, grid[2] * p});
}

torch::Tensor vit3d_sincos_embedding(std::array<int64_t, 3> grid, int64_t dim,
                                     torch::Device device) {
  if (dim % 6 != 0) throw ValueError("vit3d_sincos_embedding: dim " + std::to_string(dim) +
                                     " is not a multiple of 6");
  const int64_t per_axis = dim / 3, half = per_axis / 2;
  auto fopt = torch::TensorOptions().dtype(torch::kFloat).device(device);
  auto omega = torch::arange(half, fopt).div(double(half)).mul(-std::log(10000.0)).exp();  // [h]
  auto iz = torch::arange(grid[0], fopt).view({-1, 1, 1}).expand({grid[0], grid[1], grid[2]});
  auto iy = torch::arange(grid[1], fopt).view({1, -1, 1}).expand({grid[0], grid[1], grid[2]});
  auto ix = torch::arange(grid[2], fopt).view({1, 1, -1}).expand({grid[0], grid[1], grid[2]});
  std::vector<torch::Tensor> parts;
  for (const auto& pos : {iz, iy, ix}) {
    auto angle = pos.reshape({-1, 1}) * omega.view({1, -1});  // [N, h]
    parts.push_back(angle.sin());
    parts.push_back(angle.cos());
  }
  return torch::cat(parts, 1);  // [N, dim]
}

ViTBlockImpl::ViTBlockImpl(int64_t dim, int64_t heads, double mlp_ratio) : heads_(heads) {
  const int64_t hidden = std::max<int64_t>(1, std::llround(dim * mlp_ratio));
  norm1_ = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  qkv_ = register_module("qkv", torch::nn::Linear(dim, 3 * dim));
  proj_ = register_module("proj", torch::nn::Linear(dim, dim));
  norm2_ = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  fc1_ = register_module("fc1", torch::nn::Linear(dim, hidden));
  fc2_ = register_module("fc2", torch::nn::Linear(hidden, dim));
}

torch::Tensor ViTBlockImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), l = x.size(1), d = x.size(2), hd = d / heads_;
  auto qkv = qkv_(norm1_(x)).view({b, l, 3, heads_, hd}).permute({2, 0, 3, 1, 4});  // [3,B,H,L,hd]
  auto att = torch::matmul(qkv[0], qkv[1].transpose(-2, -1)).div(std::sqrt(double(hd)));
  att = att.softmax(-1);                                              // [B, H, L, L]
  auto y = torch::matmul(att, qkv[2]).transpose(1, 2).reshape({b, l, d});  // [B, L, D]
  auto h = x + proj_(y);
  return h + fc2_(torch::gelu(fc1_(norm2_(h))));
}

ViT3dImpl::ViT3dImpl(const ViT3dOptions& options) : options_(options) {
  vit3d_check(options_);
  const int64_t p = options_.patch(), d = options_.dim(), dd = options_.decoder_dim();
  patch_embed_ = register_module(
      "patch_embed", torch::nn::Conv3d(torch::nn::Conv3dOptions(1, d, p).stride(p)));
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options_.depth(); ++i) {
    blocks_->push_back(ViTBlock(d, options_.heads(), options_.mlp_ratio()));
  }
  norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  decoder_embed_ = register_module("decoder_embed", torch::nn::Linear(d, dd));
  mask_token_ = register_parameter("mask_token", torch::randn({1, 1, dd}) * 0.02);
  decoder_blocks_ = register_module("decoder_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < options_.decoder_depth(); ++i) {
    decoder_blocks_->push_back(ViTBlock(dd, options_.decoder_heads(), options_.mlp_ratio()));
  }
  decoder_norm_ =
      register_module("decoder_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dd})));
  decoder_pred_ = register_module("decoder_pred", torch::nn::Linear(dd, p * p * p));
}

std::array<int64_t, 3> ViT3dImpl::grid_of(const torch::Tensor& x) const {
  const int64_t p = options_.patch();
  if (x.dim() != 5 || x.size(1) != 1) {
    throw ShapeError("vit3d: input must be [B, 1, Z, Y, X], got " + c10::str(x.sizes()));
  }
  for (int a = 2; a < 5; ++a) {
    if (x.size(a) % p != 0) {
      throw ShapeError("vit3d: size " + c10::str(x.sizes()) + " is not a multiple of the patch " +
                       std::to_string(p));
    }
  }
  return {x.size(2) / p, x.size(3) / p, x.size(4) / p};
}

torch::Tensor ViT3dImpl::encode(const torch::Tensor& x, const torch::Tensor& keep) {
  auto grid = grid_of(x);
  const int64_t d = options_.dim();
  auto tok = patch_embed_(x).flatten(2).transpose(1, 2);  // [B, N, D]
  tok = tok + vit3d_sincos_embedding(grid, d, x.device()).unsqueeze(0);
  if (keep.defined()) {
    tok = tok.gather(1, keep.unsqueeze(-1).expand({keep.size(0), keep.size(1), d}));  // [B, K, D]
  }
  for (const auto& blk : *blocks_) tok = blk->as<ViTBlock>()->forward(tok);
  return norm_(tok);
}

torch::Tensor ViT3dImpl::decode(const torch::Tensor& latent, const torch::Tensor& keep,
                                std::array<int64_t, 3> grid) {
  const int64_t b = latent.size(0), n = grid[0] * grid[1] * grid[2];
  const int64_t dd = options_.decoder_dim();
  auto y = decoder_embed_(latent);  // [B, K, dd]
  torch::Tensor full;
  if (keep.defined()) {
    full = mask_token_.expand({b, n, dd}).clone();  // [B, N, dd]
    full = full.scatter(1, keep.unsqueeze(-1).expand({b, keep.size(1), dd}), y);
  } else {
    full = y;
  }
  full = full + vit3d_sincos_embedding(grid, dd, latent.device()).unsqueeze(0);
  for (const auto& blk : *decoder_blocks_) full = blk->as<ViTBlock>()->forward(full);
  return decoder_pred_(decoder_norm_(full));  // [B, N, p^3]
}

}  // namespace unwedge
