// Discriminator3d: a small 3D convolutional classifier (real observation vs pseudo-observation)
// for adversarial priors (cryogen-map). Strided 3x3x3 convolutions with leaky ReLU, global
// average pooling and a linear head; one logit per sample. Stabilised by the caller with an R1
// gradient penalty (no spectral normalisation in this build).
#pragma once
#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace unwedge {

struct Discriminator3dOptions {
  /// Channels of the first convolution, doubled per level.
  TORCH_ARG(int64_t, base_channels) = 8;
  /// Strided (downsampling) levels; inputs must be at least 2^levels voxels along each axis.
  TORCH_ARG(int64_t, levels) = 3;
  /// Negative slope of the leaky ReLUs.
  TORCH_ARG(double, slope) = 0.2;
};

class Discriminator3dImpl : public torch::nn::Module {
 public:
  explicit Discriminator3dImpl(const Discriminator3dOptions& options = {});
  /// x [B, 1, Z, Y, X] -> logits [B] (positive = real).
  torch::Tensor forward(const torch::Tensor& x);
  const Discriminator3dOptions& options() const { return options_; }

 private:
  Discriminator3dOptions options_;
  torch::nn::Sequential body_{nullptr};
  torch::nn::Linear head_{nullptr};
};
TORCH_MODULE(Discriminator3d);

}  // namespace unwedge
