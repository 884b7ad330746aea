// n2n: Noise2Noise between half tomograms. The network maps one half to the other; since the
// halves share the signal and have independent zero-mean noise, the MSE minimiser is the signal.
#include "unwedge/methods/n2n.h"

#include "unwedge/core/error.h"
#include "unwedge/methods/augment.h"
#include "unwedge/methods/unet_method.h"

namespace unwedge {

namespace {

class N2N : public UNetMethod {
 public:
  explicit N2N(const nlohmann::json& resolved)
      : UNetMethod(resolved),
        swap_(resolved.at("swap").get<bool>()),
        augment_(augment_mode_parse(resolved.at("augment").get<std::string>())) {}

  std::string name() const override { return "n2n"; }
  bool needs_halves() const override { return true; }

  torch::Tensor loss(const Batch& batch) override {
    method_check_batch_tensor(name(), "input (even half)", batch.input);
    method_check_batch_tensor(name(), "target (odd half)", batch.target);
    if (batch.input.sizes() != batch.target.sizes()) {
      throw ShapeError("method n2n: halves differ in shape: " + c10::str(batch.input.sizes()) +
                       " vs " + c10::str(batch.target.sizes()));
    }
    torch::Tensor in = batch.input, tg = batch.target;  // [B, 1, Z, Y, X]
    if (swap_) {
      auto s = torch::randint(2, {in.size(0), 1, 1, 1, 1}, torch::kLong).to(in.device()).to(
          torch::kBool);  // [B, 1, 1, 1, 1]
      auto a = torch::where(s, tg, in);
      tg = torch::where(s, in, tg);
      in = a;
    }
    WedgeGeometry g = batch.wedge.empty() ? WedgeGeometry{} : method_wedge_geometry(batch.wedge[0]);
    auto aug = augment_about_tilt_axis({in, tg, batch.mask}, augment_, g);
    auto pred = forward_padded(aug[0]);  // [B, 1, Z, Y, X]
    return method_masked_mse(pred, aug[1], aug[2]);
  }

 private:
  bool swap_;
  AugmentMode augment_;
};

}  // namespace

MethodInfo n2n_method_info() {
  MethodInfo info;
  info.name = "n2n";
  info.description = "Noise2Noise between half tomograms (cryoCARE-style denoising)";
  info.can.halves = true;
  info.options = {
      {"swap", true, "swap input and target half per sample at random"},
      {"augment", "wedge",
       "wedge (rotations/mirrors keeping the wedge) | rot90y (also 90 deg about Y) | none"},
  };
  for (auto& o : unet_method_options({{"lowpass_skip", 0.1}})) info.options.push_back(o);
  info.create = [](const nlohmann::json& resolved) -> std::unique_ptr<Method> {
    return std::make_unique<N2N>(resolved);
  };
  return info;
}

}  // namespace unwedge
