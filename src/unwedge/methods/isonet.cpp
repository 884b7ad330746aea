// isonet: IsoNet-style training on one tomogram. Per sample: the wedge-filled subtomogram
// (measured band from the data, missing band from a snapshot of the network refreshed every
// refill_every steps; the data alone before the first refresh) is rotated, by one of the cube
// rotations that move the wedge (exact, no interpolation) or, with random_rotations, by a Haar
// rotation followed by a centre crop; target = the rotated filled volume, input = its re-wedged
// copy T_M(target) (+ noise of noise_level × the target's std from step noise_start). Real-space
// MSE. The network learns to restore what T_M removes, on wedges in directions the data has.
#include <cmath>

#include "unwedge/core/error.h"
#include "unwedge/methods/unet_method.h"
#include "unwedge/methods/wedge_common.h"
#include "unwedge/methods/wedge_methods.h"
#include "unwedge/ops/rotate.h"

namespace unwedge {

namespace {

class IsoNet : public UNetMethod {
 public:
  explicit IsoNet(const nlohmann::json& r)
      : UNetMethod(r),
        refill_every_(r.at("refill_every").get<int64_t>()),
        random_(r.at("random_rotations").get<bool>()),
        noise_level_(r.at("noise_level").get<double>()),
        noise_start_(r.at("noise_start").get<int64_t>()) {
    if (refill_every_ < 0) {
      throw ValueError("method isonet: refill_every = " + std::to_string(refill_every_) + " (need >= 0)");
    }
    if (noise_level_ < 0) {
      throw ValueError("method isonet: noise_level = " + std::to_string(noise_level_) + " (need >= 0)");
    }
  }

  std::string name() const override { return "isonet"; }
  bool needs_halves() const override { return false; }

  torch::Tensor loss(const Batch& batch) override {
    method_check_batch_tensor(name(), "input", batch.input);
    const auto dev = batch.device();
    const int64_t b = batch.input.size(0);
    const std::array<int64_t, 3> patch{batch.input.size(2), batch.input.size(3), batch.input.size(4)};
    auto geoms = wedge_batch_geometries(batch, b);
    auto m_patch = wedge_batch_masks(patch, geoms, masks_, dev);  // [B, 1, P, P, P/2+1]
    torch::Tensor filled = batch.input;                           // [B, 1, P, P, P]
    if (refill_every_ > 0 && batch.step >= refill_every_) {
      snapshot_.refresh(net_, batch.step, refill_every_);
      filled = wedge_refill(filled, snapshot_.run(filled), m_patch);
    }
    torch::Tensor target, input, m;
    if (random_) {
      const int64_t n = rotation_crop_size(patch, size_multiple()[0]);
      m = wedge_batch_masks({n, n, n}, geoms, masks_, dev);
      auto R = wedge_random_rotations(b, dev);
      std::tie(target, input) = wedge_proxy_degrade(filled, R, n, m);
    } else {
      std::vector<torch::Tensor> rotated;
      for (int64_t i = 0; i < b; ++i) {
        const auto& choices = rotations_for(patch, geoms[static_cast<size_t>(i)]);
        const int64_t k = torch::randint(static_cast<int64_t>(choices.size()), {1}, torch::kLong).item<int64_t>();
        rotated.push_back(cube_rotate(filled[i], choices[static_cast<size_t>(k)]));
      }
      target = torch::stack(rotated);  // [B, 1, P, P, P]
      m = m_patch;
      input = wedge_apply(target, m);
    }
    if (noise_level_ > 0 && batch.step >= noise_start_) {
      auto var = target.flatten(1).var(1).detach() * (noise_level_ * noise_level_);  // [B]
      input = input + wedge_matched_noise(input, m, var);
    }
    auto pred = forward_padded(input);
    return (pred - target).square().mean();
  }

  void load(torch::serialize::InputArchive& archive) override {
    UNetMethod::load(archive);
    snapshot_ = NetSnapshot{};
  }

 private:
  // Cube rotations keeping the patch shape that move the wedge (fall back to all that keep the
  // shape when none moves it, e.g. for ±90°).
  const std::vector<CubeRotation>& rotations_for(std::array<int64_t, 3> patch, const WedgeGeometry& g) {
    choices_.clear();
    auto keep = cube_rotations_keeping_wedge(g);
    for (const auto& r : cube_rotations_preserving(patch)) {
      if (std::find(keep.begin(), keep.end(), r) == keep.end()) choices_.push_back(r);
    }
    if (choices_.empty()) choices_ = cube_rotations_preserving(patch);
    return choices_;
  }

  int64_t refill_every_;
  bool random_;
  double noise_level_;
  int64_t noise_start_;
  WedgeMaskCache masks_;
  NetSnapshot snapshot_;
  std::vector<CubeRotation> choices_;
};

}  // namespace

MethodInfo isonet_method_info() {
  MethodInfo info;
  info.name = "isonet";
  info.description = "IsoNet-style: rotated wedge-filled subtomogram as target, re-wedged copy as input";
  info.can.single = true;
  info.options = {
      {"refill_every", int64_t{200},
       "refill the wedge with a network snapshot refreshed every K steps, from step K (0: never)"},
      {"random_rotations", false,
       "Haar-random rotations + centre crop to <= patch/sqrt(2) instead of the cube rotations"},
      {"noise_level", 0.0, "noise added to inputs, as a fraction of the target's std (0: off)"},
      {"noise_start", int64_t{0}, "step from which the input noise is added"},
  };
  for (auto& o : unet_method_options()) info.options.push_back(o);
  info.create = [](const nlohmann::json& r) -> std::unique_ptr<Method> {
    return std::make_unique<IsoNet>(r);
  };
  return info;
}

}  // namespace unwedge
