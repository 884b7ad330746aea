// contrastive: views, NT-Xent and the method.
#include "unwedge/methods/contrastive.h"

#include <string>

#include "unwedge/core/error.h"
#include "unwedge/methods/embed.h"
#include "unwedge/methods/net_state.h"
#include "unwedge/methods/unet_method.h"
#include "unwedge/nn/cnn_encoder.h"
#include "unwedge/ops/rotate.h"
#include "unwedge/ops/wedge.h"

namespace unwedge {

torch::Tensor nt_xent(const torch::Tensor& z1, const torch::Tensor& z2, double temperature) {
  if (z1.dim() != 2 || z1.sizes() != z2.sizes() || z1.size(0) < 2) {
    throw ShapeError("nt_xent: views must be two [B, D] tensors with B >= 2, got " +
                     c10::str(z1.sizes()) + " and " + c10::str(z2.sizes()));
  }
  if (!(temperature > 0)) {
    throw ValueError("nt_xent: temperature " + std::to_string(temperature) + " is not > 0");
  }
  const int64_t b = z1.size(0);
  auto z = torch::nn::functional::normalize(
      torch::cat({z1, z2}, 0), torch::nn::functional::NormalizeFuncOptions().dim(1));  // [2B, D]
  auto sim = torch::matmul(z, z.t()) / temperature;                                    // [2B, 2B]
  auto eye = torch::eye(2 * b, z.options().dtype(torch::kBool));
  sim = sim.masked_fill(eye, -std::numeric_limits<double>::infinity());
  auto idx = torch::arange(2 * b, z.options().dtype(torch::kLong));
  auto target = (idx + b).remainder(2 * b);  // row i's positive is the other view
  return torch::nn::functional::cross_entropy(sim, target);
}

namespace {

class Contrastive : public Method, public Embedder {
 public:
  explicit Contrastive(const nlohmann::json& r) : options_(r) {
    CNNEncoderOptions o;
    o.base(r.at("base").get<int64_t>())
        .levels(r.at("levels").get<int64_t>())
        .embed_dim(r.at("embed_dim").get<int64_t>())
        .proj_dim(r.at("proj_dim").get<int64_t>());
    net_ = CNNEncoder(o);
    temperature_ = r.at("temperature").get<double>();
    noise_ = r.at("noise_level").get<double>();
    rewedge_ = r.at("rewedge").get<bool>();
    if (!(temperature_ > 0)) {
      throw ValueError("contrastive: temperature " + std::to_string(temperature_) +
                       " is not > 0");
    }
    if (!(noise_ >= 0)) {
      throw ValueError("contrastive: noise_level " + std::to_string(noise_) + " is not >= 0");
    }
  }

  std::string name() const override { return "contrastive"; }
  bool needs_halves() const override { return false; }
  bool bf16_ok() const override { return false; }

  torch::Tensor loss(const Batch& batch) override {
    method_check_batch_tensor(name(), "input", batch.input);
    const auto& x = batch.input;  // [B, 1, Z, Y, X]
    if (x.size(0) < 2) {
      throw ValueError("contrastive: batch of " + std::to_string(x.size(0)) +
                       " subtomogram(s); NT-Xent needs at least 2 (--batch)");
    }
    WedgeGeometry g;
    if (!batch.wedge.empty()) {
      g.tilt_min_deg = batch.wedge[0].tilt_min_deg;
      g.tilt_max_deg = batch.wedge[0].tilt_max_deg;
      g.sign_flip = batch.wedge[0].flip_sign;
    }
    auto z1 = net_->project(net_->forward(view(x, g)));
    auto z2 = net_->project(net_->forward(view(x, g)));
    return nt_xent(z1, z2, temperature_);
  }

  torch::Tensor restore(const torch::Tensor&) override {
    throw ValueError("method contrastive learns embeddings and cannot restore a tomogram; use "
                     "'unwedge embed' with it, or restore with mae, n2n, n2v");
  }

  torch::Tensor embed(const torch::Tensor& sub) override {
    torch::NoGradGuard ng;
    return net_->forward(sub);
  }
  int64_t embed_dim() const override { return net_->options().embed_dim(); }

  std::vector<torch::Tensor> parameters() override { return net_->parameters(); }
  void train(bool on) override { net_->train(on); }
  void to(torch::Device device) override { net_->to(device); }
  void save(torch::serialize::OutputArchive& archive) const override {
    method_net_save(*net_, archive);
  }
  void load(torch::serialize::InputArchive& archive) override {
    method_net_load(name(), *net_, archive);
  }
  nlohmann::json options_json() const override { return options_; }
  std::array<int64_t, 3> receptive_field() const override {
    const int64_t r = int64_t(1) << (net_->options().levels() + 2);
    return {r, r, r};
  }
  std::array<int64_t, 3> size_multiple() const override {
    const int64_t m = int64_t(1) << (net_->options().levels() - 1);
    return {m, m, m};
  }

 private:
  // One augmented view: random rotation, re-wedged, fresh noise relative to each sample's std.
  torch::Tensor view(const torch::Tensor& x, const WedgeGeometry& g) {
    const auto dev = x.device();
    auto R = random_rotations(x.size(0), at::globalContext().defaultGenerator(dev), dev);
    auto v = rotate_volume(x, R, /*order=*/1);  // [B, 1, Z, Y, X]
    if (rewedge_) {
      v = wedge_apply(v, wedge_cache_.mask({x.size(2), x.size(3), x.size(4)}, g, dev));
    }
    if (noise_ > 0) {
      auto sd = x.flatten(1).std(1).view({-1, 1, 1, 1, 1});  // [B, 1, 1, 1, 1]
      v = v + noise_ * sd * torch::randn_like(v);
    }
    return v;
  }

  nlohmann::json options_;
  CNNEncoder net_{nullptr};
  double temperature_ = 0.1;
  double noise_ = 0.5;
  bool rewedge_ = true;
  WedgeMaskCache wedge_cache_;
};

}  // namespace

MethodInfo contrastive_method_info() {
  MethodInfo info;
  info.name = "contrastive";
  info.description =
      "NT-Xent (SimCLR) embeddings: rotated, re-wedged, re-noised views; embeds, cannot restore";
  info.can.single = true;
  info.can.embedding = true;
  info.options = {
      {"temperature", 0.1, "NT-Xent temperature"},
      {"noise_level", 0.5, "std of the fresh noise per view, relative to the subtomogram's std"},
      {"rewedge", true, "apply the data's wedge T_M to each rotated view"},
      {"base", int64_t(16), "encoder channels of the first level (doubled per level)"},
      {"levels", int64_t(3), "encoder resolution levels"},
      {"embed_dim", int64_t(128), "embedding width (the representation)"},
      {"proj_dim", int64_t(64), "projection-head width (the loss's space)"},
  };
  info.create = [](const nlohmann::json& resolved) -> std::unique_ptr<Method> {
    return std::make_unique<Contrastive>(resolved);
  };
  return info;
}

}  // namespace unwedge
