// CNNEncoder: a small 3D convolutional encoder with a projection head, for contrastive learning.
//
// x [B, 1, Z, Y, X] (any size >= 2^levels) -> conv blocks (Conv3d 3^3, GroupNorm, ReLU), each
// level but the first halving the size with a stride-2 convolution -> global average pool ->
// Linear -> the embedding h [B, embed_dim]. project(h) is the SimCLR head (Linear, ReLU,
// Linear) -> z [B, proj_dim]; the loss uses z, downstream tasks use h.
#pragma once
#include <cstdint>

#include <torch/torch.h>

namespace unwedge {

struct CNNEncoderOptions {
  /// Channels of the first level (doubled per level).
  TORCH_ARG(int64_t, base) = 16;
  /// Resolution levels (each after the first halves the size).
  TORCH_ARG(int64_t, levels) = 3;
  /// Embedding width (the representation).
  TORCH_ARG(int64_t, embed_dim) = 128;
  /// Projection-head output width (what the contrastive loss compares).
  TORCH_ARG(int64_t, proj_dim) = 64;
};

/// Throws ValueError naming a non-positive option.
void cnn_encoder_check(const CNNEncoderOptions& o);

class CNNEncoderImpl : public torch::nn::Module {
 public:
  explicit CNNEncoderImpl(const CNNEncoderOptions& options = {});
  /// x [B, 1, Z, Y, X] -> h [B, embed_dim].
  torch::Tensor forward(const torch::Tensor& x);
  /// h [B, embed_dim] -> z [B, proj_dim].
  torch::Tensor project(const torch::Tensor& h);
  const CNNEncoderOptions& options() const { return options_; }

 private:
  CNNEncoderOptions options_;
  torch::nn::Sequential features_{nullptr};
  torch::nn::Linear fc_{nullptr};
  torch::nn::Sequential head_{nullptr};
};
TORCH_MODULE(CNNEncoder);

}  // namespace unwedge
