// Training augmentation that respects the missing wedge: random transforms about the tilt axis Y,
// the same for every tensor of a sample (input, target, mask), drawn per sample.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "unwedge/methods/method.h"
#include "unwedge/ops/wedge.h"

namespace unwedge {

/// Which transforms are drawn.
///  wedge : the exact cube rotations that map the measured region onto itself
///          (ops' cube_rotations_keeping_wedge: 180° about Y always; 180° about X and Z for a
///          symmetric range), each optionally mirrored along Y (ky is free, so a Y mirror keeps
///          the wedge). The safe default.
///  rot90y: the four rotations about Y (+ Y mirror), as in cryoCARE. 90° and 270° turn the
///          wedge about kz into one about kx: the network then also sees wedges the data never
///          has. Only used for cubic-in-XZ patches (Z == X); else falls back to `wedge`.
///  none  : identity.
enum class AugmentMode { wedge, rot90y, none };

/// "wedge" | "rot90y" | "none"; ValueError otherwise.
AugmentMode augment_mode_parse(const std::string& s);

/// MethodWedge (the method interface's geometry) as ops' WedgeGeometry.
WedgeGeometry method_wedge_geometry(const MethodWedge& w);

/// Applies one random transform per sample to every defined tensor of `ts` (each
/// [B, C, Z, Y, X] with the same B, Z, Y, X); undefined tensors stay undefined.
/// Randomness: torch's default CPU generator.
std::vector<torch::Tensor> augment_about_tilt_axis(const std::vector<torch::Tensor>& ts,
                                                   AugmentMode mode, const WedgeGeometry& g);

}  // namespace unwedge
