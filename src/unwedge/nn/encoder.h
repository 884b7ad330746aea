// Encoder3d: a small 3D convolutional autoencoder whose encoder gives local feature vectors of a
// subtomogram (one per 4x4x4 block), for distribution matching by optimal transport (cryogen-ot,
// WAE style: the autoencoder is trained to reconstruct real observations).
#pragma once
#include <cstdint>

#include <torch/torch.h>

namespace unwedge {

struct Encoder3dOptions {
  /// Channels of the first (strided) convolution; the second has twice as many.
  TORCH_ARG(int64_t, channels) = 8;
  /// Feature channels per location (the dimension of each OT point).
  TORCH_ARG(int64_t, features) = 16;
};

class Encoder3dImpl : public torch::nn::Module {
 public:
  explicit Encoder3dImpl(const Encoder3dOptions& options = {});
  /// x [B, 1, Z, Y, X] (each a multiple of 4) -> features [B, F, Z/4, Y/4, X/4].
  torch::Tensor encode(const torch::Tensor& x);
  /// features [B, F, z, y, x] -> reconstruction [B, 1, 4z, 4y, 4x].
  torch::Tensor decode(const torch::Tensor& h);
  const Encoder3dOptions& options() const { return options_; }

 private:
  Encoder3dOptions options_;
  torch::nn::Sequential enc_{nullptr}, dec_{nullptr};
};
TORCH_MODULE(Encoder3d);

/// Points of a feature map for OT: [B, F, z, y, x] -> [B·z·y·x, F].
torch::Tensor encoder_points(const torch::Tensor& features);

}  // namespace unwedge
