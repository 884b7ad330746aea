// Encoder3d (see encoder.h).
#include "unwedge/nn/encoder.h"

#include "unwedge/core/error.h"

namespace unwedge {

Encoder3dImpl::Encoder3dImpl(const Encoder3dOptions& options) : options_(options) {
  if (options.channels() < 1 || options.features() < 1) {
    throw ValueError("encoder: channels = " + std::to_string(options.channels()) +
                     ", features = " + std::to_string(options.features()) + " (need >= 1)");
  }
  const int64_t c = options.channels(), f = options.features();
  auto lrelu = [] { return torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.2)); };
  enc_ = torch::nn::Sequential(
      torch::nn::Conv3d(torch::nn::Conv3dOptions(1, c, 3).stride(2).padding(1)), lrelu(),
      torch::nn::Conv3d(torch::nn::Conv3dOptions(c, 2 * c, 3).stride(2).padding(1)), lrelu(),
      torch::nn::Conv3d(torch::nn::Conv3dOptions(2 * c, f, 1)));
  dec_ = torch::nn::Sequential(
      torch::nn::ConvTranspose3d(torch::nn::ConvTranspose3dOptions(f, 2 * c, 2).stride(2)), lrelu(),
      torch::nn::ConvTranspose3d(torch::nn::ConvTranspose3dOptions(2 * c, c, 2).stride(2)), lrelu(),
      torch::nn::Conv3d(torch::nn::Conv3dOptions(c, 1, 3).padding(1)));
  register_module("enc", enc_);
  register_module("dec", dec_);
}

torch::Tensor Encoder3dImpl::encode(const torch::Tensor& x) {
  for (int d = 2; d < 5; ++d) {
    if (x.dim() != 5 || x.size(d) % 4 != 0) {
      throw ShapeError("encoder: input must be [B, 1, Z, Y, X] with multiples of 4, got " +
                       c10::str(x.sizes()));
    }
  }
  return enc_->forward(x);
}

torch::Tensor Encoder3dImpl::decode(const torch::Tensor& h) { return dec_->forward(h); }

torch::Tensor encoder_points(const torch::Tensor& features) {
  return features.flatten(2).transpose(1, 2).reshape({-1, features.size(1)});  // [B·n, F]
}

}  // namespace unwedge
