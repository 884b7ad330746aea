// Discriminator3d (see discriminator.h).
#include "unwedge/nn/discriminator.h"

#include "unwedge/core/error.h"

namespace unwedge {

Discriminator3dImpl::Discriminator3dImpl(const Discriminator3dOptions& options)
    : options_(options) {
  if (options.base_channels() < 1 || options.levels() < 1) {
    throw ValueError("discriminator: base_channels = " + std::to_string(options.base_channels()) +
                     ", levels = " + std::to_string(options.levels()) + " (need >= 1)");
  }
  body_ = torch::nn::Sequential();
  int64_t in = 1, out = options.base_channels();
  for (int64_t l = 0; l < options.levels(); ++l) {
    body_->push_back(torch::nn::Conv3d(
        torch::nn::Conv3dOptions(in, out, 3).stride(2).padding(1)));
    body_->push_back(torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(options.slope())));
    in = out;
    out *= 2;
  }
  register_module("body", body_);
  head_ = register_module("head", torch::nn::Linear(in, 1));
}

torch::Tensor Discriminator3dImpl::forward(const torch::Tensor& x) {
  auto h = body_->forward(x);                  // [B, C, z, y, x]
  h = h.mean(std::vector<int64_t>{2, 3, 4});   // [B, C]
  return head_->forward(h).squeeze(1);         // [B]
}

}  // namespace unwedge
