// CNNEncoder: conv levels, global pooling, embedding and projection head.
#include "unwedge/nn/cnn_encoder.h"

#include <string>

#include "unwedge/core/error.h"

namespace unwedge {

void cnn_encoder_check(const CNNEncoderOptions& o) {
  auto need = [](int64_t v, const char* what) {
    if (v < 1) throw ValueError(std::string("cnn_encoder: ") + what + " " + std::to_string(v) +
                                " is not >= 1");
  };
  need(o.base(), "base");
  need(o.levels(), "levels");
  need(o.embed_dim(), "embed_dim");
  need(o.proj_dim(), "proj_dim");
}

CNNEncoderImpl::CNNEncoderImpl(const CNNEncoderOptions& options) : options_(options) {
  cnn_encoder_check(options_);
  namespace nn = torch::nn;
  nn::Sequential f;
  int64_t in = 1;
  for (int64_t l = 0; l < options_.levels(); ++l) {
    const int64_t out = options_.base() << l;
    const int64_t groups = std::min<int64_t>(8, out);
    f->push_back(nn::Conv3d(nn::Conv3dOptions(in, out, 3).padding(1).stride(l == 0 ? 1 : 2)));
    f->push_back(nn::GroupNorm(nn::GroupNormOptions(groups, out)));
    f->push_back(nn::ReLU());
    f->push_back(nn::Conv3d(nn::Conv3dOptions(out, out, 3).padding(1)));
    f->push_back(nn::GroupNorm(nn::GroupNormOptions(groups, out)));
    f->push_back(nn::ReLU());
    in = out;
  }
  features_ = register_module("features", f);
  fc_ = register_module("fc", nn::Linear(in, options_.embed_dim()));
  head_ = register_module(
      "head", nn::Sequential(nn::Linear(options_.embed_dim(), options_.embed_dim()), nn::ReLU(),
                             nn::Linear(options_.embed_dim(), options_.proj_dim())));
}

torch::Tensor CNNEncoderImpl::forward(const torch::Tensor& x) {
  if (x.dim() != 5 || x.size(1) != 1) {
    throw ShapeError("cnn_encoder: input must be [B, 1, Z, Y, X], got " + c10::str(x.sizes()));
  }
  auto f = features_->forward(x);          // [B, C, z, y, x]
  return fc_(f.mean({2, 3, 4}));           // [B, embed_dim]
}

torch::Tensor CNNEncoderImpl::project(const torch::Tensor& h) { return head_->forward(h); }

}  // namespace unwedge
