// Tile plans for restoration: tiles aligned to the network's size multiple, overlapping, with a
// separable blend window that is zero within `margin` voxels of every interior tile edge and
// ramps (sin^2) to one over the rest of the overlap. With margin >= half the receptive field,
// blended tiles equal the whole-volume result exactly.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace unwedge {

/// Tiles along one axis of length `dim` (voxels), padded at the high end to `padded`.
struct TileAxis {
  int64_t dim = 0;       ///< voxels in the volume
  int64_t padded = 0;    ///< dim rounded up to the alignment
  int64_t tile = 0;      ///< tile length (multiple of the alignment, <= padded)
  int64_t margin = 0;    ///< zero-weight voxels at an interior tile edge
  int64_t ramp = 0;      ///< sin^2 ramp length after the margin
  std::vector<int64_t> starts;  ///< tile starts (multiples of the alignment), ascending
  /// Weight of tile i along this axis, float [tile].
  at::Tensor window(size_t i) const;
  /// Sum of all tiles' windows, float [padded] (> 0 everywhere).
  at::Tensor weight_sum() const;
};

/// Plans one axis. tile and overlap in voxels; `align` is the network's size multiple;
/// `halo` the voxels one output depends on to each side (half the receptive field).
/// margin = halo when the overlap allows (overlap >= 2 * halo), else overlap / 4.
/// Throws ValueError for non-positive sizes or an overlap >= tile.
TileAxis tile_axis_make(int64_t dim, int64_t tile, int64_t overlap, int64_t align, int64_t halo);

/// A 3D plan: one TileAxis per axis Z, Y, X.
struct TilePlan {
  std::array<TileAxis, 3> axes;
  int64_t num_tiles() const {
    return int64_t(axes[0].starts.size() * axes[1].starts.size() * axes[2].starts.size());
  }
};

TilePlan tile_plan_make(const std::array<int64_t, 3>& shape, const std::array<int64_t, 3>& tile,
                        int64_t overlap, const std::array<int64_t, 3>& align,
                        const std::array<int64_t, 3>& receptive_field);

/// Outer product of three 1D windows: [Z] x [Y] x [X] -> [Z, Y, X].
at::Tensor tile_window_3d(const at::Tensor& wz, const at::Tensor& wy, const at::Tensor& wx);

/// A streaming accumulator that covered sections [base, base + acc.size(0)) re-based at z0
/// (>= base): a zero float tensor [depth, Y, X] holding what acc had added to [z0, old end).
/// acc may be undefined (the first row). An accumulator of that shape is re-based in place and
/// returned (no second buffer of its size).
at::Tensor tile_accumulator_rebase(const at::Tensor& acc, int64_t base, int64_t z0, int64_t depth,
                                   int64_t ny, int64_t nx);

}  // namespace unwedge
