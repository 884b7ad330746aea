// UNetMethod: the shared body of methods whose only network is one UNet3d (n2n, n2v, ...):
// parameters, modes, devices, save/load, padded restore and the network's option list.
#pragma once
#include <array>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "unwedge/methods/method.h"
#include "unwedge/nn/unet3d.h"

namespace unwedge {

/// The network options every UNet-based method accepts (keys of unet3d_options_to_json), with
/// their defaults (UNet3dOptions', or the method's own from `defaults`, e.g.
/// {{"lowpass_skip", 0.1}}) and one-line help.
std::vector<MethodOption> unet_method_options(const nlohmann::json& defaults = nlohmann::json::object());


class UNetMethod : public Method {
 public:
  /// `resolved`: the method's resolved options; the network keys are read from it.
  explicit UNetMethod(const nlohmann::json& resolved);

  /// Pads sub [B, 1, Z, Y, X] to the size multiple (reflect), runs the network without
  /// gradients, crops back.
  torch::Tensor restore(const torch::Tensor& sub) override;
  std::vector<torch::Tensor> parameters() override { return net_->parameters(); }
  torch::nn::Module* main_network() override { return net_.ptr().get(); }
  void train(bool on) override { net_->train(on); }
  void to(torch::Device device) override { net_->to(device); }
  /// Writes the network under the key "net".
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
  nlohmann::json options_json() const override { return options_; }
  std::array<int64_t, 3> receptive_field() const override {
    return unet3d_receptive_field(net_->options());
  }
  std::array<int64_t, 3> size_multiple() const override {
    return unet3d_size_multiple(net_->options());
  }

  /// The network, e.g. for tests and benchmarks.
  UNet3d& net() { return net_; }

 protected:
  /// Network output for x [B, 1, Z, Y, X] with padding to the size multiple (keeps the graph).
  torch::Tensor forward_padded(const torch::Tensor& x);

  nlohmann::json options_;
  UNet3d net_{nullptr};
};

/// Checks a training tensor is float [B, 1, Z, Y, X]; throws ShapeError naming `what`.
void method_check_batch_tensor(const std::string& method, const std::string& what,
                               const torch::Tensor& t);

/// Masked mean squared error: mean of (a - b)^2 weighted by `weight` (undefined = all ones).
torch::Tensor method_masked_mse(const torch::Tensor& a, const torch::Tensor& b,
                                const torch::Tensor& weight);

}  // namespace unwedge
