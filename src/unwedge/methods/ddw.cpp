// ddw: DeepDeWedge-style training on half tomograms. Per sample: a random rotation R from the
// option `rotations` (cube, the default: the exact cube rotations that move the wedge; haar:
// Haar-uniform as DeepDeWedge; mix), input = T_M(crop(R y_a)), target = crop(R y_b) (halves a, b
// swapped at random), loss on the target's rotated measured region M_R split into the band both
// saw (M_R·M) and the band only the target saw (M_R·(1−M)), the latter weighted by lambda
// (wedge_common.h: ddw_loss).
// Haar-rotated patches are cropped after rotation to the largest multiple of the U-Net's size
// multiple <= P/√2 (train with --patch ceil(√2·N) for an N-voxel loss); cube rotations keep the
// whole patch. With refill_every > 0 (DeepDeWedge's schedule; off by default), from that step on
// the input half's missing wedge is refilled by a snapshot of the network refreshed every
// refill_every steps. bench/RESULTS.md, "ddw: cube rotations, no refill", measures both changes.
#include "unwedge/core/error.h"
#include "unwedge/ops/wedge.h"
#include "unwedge/methods/unet_method.h"
#include "unwedge/methods/wedge_common.h"
#include "unwedge/methods/wedge_methods.h"

namespace unwedge {

namespace {

class Ddw : public UNetMethod {
 public:
  explicit Ddw(const nlohmann::json& r)
      : UNetMethod(r),
        lambda_(r.at("lambda").get<double>()),
        swap_(r.at("swap").get<bool>()),
        crop_(r.at("crop").get<bool>()),
        refill_every_(r.at("refill_every").get<int64_t>()),
        rotations_(wedge_rotations_parse(r.at("rotations").get<std::string>(), "ddw"),
                   r.at("min_fraction").get<double>()) {
    if (lambda_ < 0) throw ValueError("method ddw: lambda = " + std::to_string(lambda_) + " (need >= 0)");
    if (refill_every_ < 0) {
      throw ValueError("method ddw: refill_every = " + std::to_string(refill_every_) + " (need >= 0)");
    }
  }

  std::string name() const override { return "ddw"; }
  bool needs_halves() const override { return true; }

  torch::Tensor loss(const Batch& batch) override {
    method_check_batch_tensor(name(), "input (even half)", batch.input);
    method_check_batch_tensor(name(), "target (odd half)", batch.target);
    if (batch.input.sizes() != batch.target.sizes()) {
      throw ShapeError("method ddw: halves differ in shape: " + c10::str(batch.input.sizes()) +
                       " vs " + c10::str(batch.target.sizes()));
    }
    const auto dev = batch.device();
    const int64_t b = batch.input.size(0);
    const std::array<int64_t, 3> patch{batch.input.size(2), batch.input.size(3), batch.input.size(4)};
    auto geoms = wedge_batch_geometries(batch, b);
    torch::Tensor ya = batch.input, yb = batch.target;  // [B, 1, P, P, P]
    if (swap_) {
      auto s = torch::randint(2, {b, 1, 1, 1, 1}, torch::kLong).to(dev).to(torch::kBool);
      auto t = torch::where(s, yb, ya);
      yb = torch::where(s, ya, yb);
      ya = t;
    }
    if (refill_every_ > 0 && batch.step >= refill_every_) {
      snapshot_.refresh(net_, batch.step, refill_every_);
      auto m_patch = wedge_batch_masks(patch, geoms, masks_, dev);  // [B, 1, P, P, P/2+1]
      ya = wedge_refill(ya, snapshot_.run(ya), m_patch);
    }
    const int64_t n = wedge_rotated_edge(patch, crop_, rotations_.set(), size_multiple()[0], name());
    const std::array<int64_t, 3> shape{n, n, n};
    auto rot = rotations_.draw(patch, geoms, dev);                 // R [B, 3, 3]
    auto m = wedge_batch_masks(shape, geoms, masks_, dev);         // [B, 1, n, n, n/2+1]
    auto input = wedge_apply(wedge_rotate(ya, rot, n), m);         // T_M(crop(R y_a))
    auto target = wedge_rotate(yb, rot, n);                        // crop(R y_b)
    auto m_rot = wedge_batch_masks_rotated(shape, geoms, rot.R);   // [B, 1, n, n, n/2+1]
    auto pred = forward_padded(input);
    return ddw_loss(pred, target, m_rot.to(pred.dtype()), m, lambda_).total;
  }

  void load(torch::serialize::InputArchive& archive) override {
    UNetMethod::load(archive);
    snapshot_ = NetSnapshot{};
  }

 private:
  double lambda_;
  bool swap_, crop_;
  int64_t refill_every_;
  WedgeRotationSampler rotations_;
  WedgeMaskCache masks_;
  NetSnapshot snapshot_;
};

}  // namespace

MethodInfo ddw_method_info() {
  MethodInfo info;
  info.name = "ddw";
  info.description = "DeepDeWedge-style: T_M(R y_even) -> R y_odd, loss split by band (wedge filling)";
  info.can.halves = true;
  info.options = {
      {"lambda", 2.0, "weight of the band only the target saw (wedge) vs the band both saw"},
      {"swap", true, "swap the halves per sample at random"},
      {"rotations", "cube",
       "cube (exact cube rotations that move the wedge, whole patch) | haar (SO(3) as DeepDeWedge, "
       "trilinear, centre crop) | mix"},
      {"min_fraction", 0.5,
       "cube rotations used: those moving at least this fraction of the missing region into measured territory"},
      {"crop", true,
       "centre-crop Haar-rotated patches to the largest size-multiple <= patch/sqrt(2) (no empty corners; "
       "cube rotations never crop)"},
      {"refill_every", int64_t{0},
       "refill the input's wedge with a network snapshot refreshed every K steps, from step K (0: off)"},
  };
  for (auto& o : unet_method_options()) info.options.push_back(o);
  info.create = [](const nlohmann::json& r) -> std::unique_ptr<Method> {
    return std::make_unique<Ddw>(r);
  };
  return info;
}

}  // namespace unwedge
