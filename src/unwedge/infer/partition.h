// How restoration and sampling share out their work among ranks: whole tomograms when there are
// at least as many as ranks, else every tomogram cut into contiguous slabs of Z sections, one per
// rank. A rank restores the tile rows that touch its slab (their overlap context included) and
// writes only its slab's sections, so the pieces equal a single-rank run.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace unwedge {

/// One piece of a rank's work: output sections [z0, z1) of item (tomogram) `item`.
struct WorkSlab {
  int64_t item = 0;
  int64_t z0 = 0, z1 = 0;
  bool whole = false;  ///< the slab is the whole item (no other rank writes to it)
};

/// Every rank's work for items of `shapes` [Z, Y, X], `world` ranks:
/// - items >= world: whole items, largest first to the least-loaded rank (by voxels; ties to the
///   lower rank), so each item is written by one rank;
/// - items < world: each item split along Z into `world` contiguous slabs of near-equal depth,
///   slab r to rank r (slab boundaries on multiples of `align` sections; a rank's slab may be
///   empty when an item has fewer sections than ranks).
/// Returns result[rank] = that rank's slabs in item order. Throws ValueError for world < 1,
/// align < 1 or an empty shape.
std::vector<std::vector<WorkSlab>> partition_work(const std::vector<std::array<int64_t, 3>>& shapes,
                                                  int world, int64_t align = 1);

/// Rank `rank`'s share of partition_work(shapes, world, align).
std::vector<WorkSlab> partition_for_rank(const std::vector<std::array<int64_t, 3>>& shapes,
                                         int rank, int world, int64_t align = 1);

}  // namespace unwedge
