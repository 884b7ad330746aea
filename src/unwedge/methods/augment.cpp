// Wedge-respecting augmentation about the tilt axis.
#include "unwedge/methods/augment.h"

#include "unwedge/core/error.h"
#include "unwedge/ops/rotate.h"

namespace unwedge {

AugmentMode augment_mode_parse(const std::string& s) {
  if (s == "wedge") return AugmentMode::wedge;
  if (s == "rot90y") return AugmentMode::rot90y;
  if (s == "none") return AugmentMode::none;
  throw ValueError("augment '" + s + "' is not one of (wedge, rot90y, none)");
}

WedgeGeometry method_wedge_geometry(const MethodWedge& w) {
  WedgeGeometry g;
  g.tilt_min_deg = w.tilt_min_deg;
  g.tilt_max_deg = w.tilt_max_deg;
  g.sign_flip = w.flip_sign;
  return g;
}

std::vector<torch::Tensor> augment_about_tilt_axis(const std::vector<torch::Tensor>& ts,
                                                   AugmentMode mode, const WedgeGeometry& g) {
  if (mode == AugmentMode::none || ts.empty() || !ts[0].defined()) return ts;
  const auto& ref = ts[0];  // [B, C, Z, Y, X]
  std::vector<CubeRotation> group;
  if (mode == AugmentMode::rot90y && ref.size(2) == ref.size(4)) {
    group = cube_rotations_about_y();
  } else {
    group = cube_rotations_keeping_wedge(g);
  }
  // Keep only rotations that leave the patch shape unchanged (a ±90° range allows all 24).
  std::vector<CubeRotation> same_shape;
  for (const auto& r : group) {
    bool keeps = true;
    for (int i = 0; i < 3; ++i) keeps = keeps && ref.size(2 + r.perm[i]) == ref.size(2 + i);
    if (keeps) same_shape.push_back(r);
  }
  group = same_shape;
  const int64_t b = ref.size(0);
  // Per sample: which rotation, and whether to mirror Y.
  auto pick = torch::randint(int64_t(group.size()), {b}, torch::kLong);
  auto mirror = torch::randint(2, {b}, torch::kLong);
  auto pick_a = pick.accessor<int64_t, 1>();
  auto mirror_a = mirror.accessor<int64_t, 1>();
  std::vector<torch::Tensor> out;
  for (const auto& t : ts) {
    if (!t.defined()) {
      out.push_back(t);
      continue;
    }
    std::vector<torch::Tensor> samples;
    for (int64_t i = 0; i < b; ++i) {
      auto s = cube_rotate(t[i], group[pick_a[i]]);  // [C, Z, Y, X]
      if (mirror_a[i]) s = s.flip({-2});
      samples.push_back(s);
    }
    out.push_back(torch::stack(samples));  // [B, C, Z, Y, X]
  }
  return out;
}

}  // namespace unwedge
