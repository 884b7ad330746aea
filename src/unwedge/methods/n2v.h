// n2v: Noise2Void blind-spot training on a single tomogram (or on tilt images).
//
// A fraction of voxels is replaced by a random neighbour (never the voxel itself) and the loss is
// taken only there: the network cannot copy a voxel's own noise, so it learns to predict the
// voxel from its surroundings. This assumes noise independent between voxels. Tomographic noise
// is not: back-projection spreads each projection pixel's noise along rays, so neighbours share
// noise and the blind spot leaks (a plain prototype gained little: CC 0.14 -> 0.16).
// `struct_mask` blanks a line of neighbours along one axis against noise correlated along it;
// the cleaner remedy is blind-spot training on the aligned tilt images (pixel-independent shot
// noise), with the option planar=true (2D network on [B, 1, 1, Y, X]) — see docs.
#pragma once
#include <string>

#include <torch/torch.h>

#include "unwedge/methods/method.h"

namespace unwedge {

/// Line of neighbours blanked around each masked voxel (structN2V). axis -1 = off.
struct N2VStructMask {
  int axis = -1;     ///< 0 = Z, 1 = Y, 2 = X, -1 = off
  int64_t span = 0;  ///< voxels blanked on each side of the masked voxel along `axis`
};
/// "" or "none" (off), or "AXIS,SPAN" with AXIS in z|y|x and SPAN >= 1, e.g. "z,3".
N2VStructMask n2v_struct_mask_parse(const std::string& s);

/// Result of n2v_mask. All [B, 1, Z, Y, X].
struct N2VMasking {
  torch::Tensor input;   ///< the masked copy of x: the network's input
  torch::Tensor mask;    ///< bool: where a voxel was replaced (the loss is taken only here)
  torch::Tensor source;  ///< int64: in-sample linear index z*Y*X + y*X + x of the voxel copied
                         ///< into each masked voxel; -1 elsewhere
};

/// Masks x [B, 1, Z, Y, X]: per sample round(fraction * Z*Y*X) positions (at least one; drawn
/// with replacement, so a few may coincide) each get the value of a random neighbour with
/// offsets in [-radius, radius]^3 (per axis limited to size-1; Z offsets 0 when `planar`),
/// never the zero offset. At the border an offset pointing outside is mirrored (c - d), so the
/// source is never the voxel itself. With a struct mask the source is also never on the blanked
/// line, and the line's other voxels (span on each side) get Gaussian noise with the sample's
/// mean and standard deviation. Randomness: torch's default generator of x's device.
N2VMasking n2v_mask(const torch::Tensor& x, double fraction, int64_t radius,
                    const N2VStructMask& struct_mask = {}, bool planar = false);

/// The n2v loss: mean squared error of pred against x over the masked voxels only
/// (weighted by `region` in [0, 1] when defined).
torch::Tensor n2v_loss(const torch::Tensor& pred, const torch::Tensor& x,
                       const torch::Tensor& mask, const torch::Tensor& region = {});

/// Registry entry of `n2v`. Options (besides the network's, see unet_method_options):
///   mask_fraction (0.01)  fraction of voxels masked per sample
///   radius        (2)     neighbourhood radius in voxels for the replacement value
///   struct_mask   ("")    "AXIS,SPAN" line of neighbours blanked, e.g. "z,3"
///   augment       ("wedge") wedge | rot90y | none
MethodInfo n2v_method_info();

}  // namespace unwedge
