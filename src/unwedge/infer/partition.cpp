#include "unwedge/infer/partition.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "unwedge/core/error.h"

namespace unwedge {

std::vector<std::vector<WorkSlab>> partition_work(const std::vector<std::array<int64_t, 3>>& shapes,
                                                  int world, int64_t align) {
  if (world < 1) throw ValueError("partition: world size " + std::to_string(world) + " < 1");
  if (align < 1) throw ValueError("partition: alignment " + std::to_string(align) + " < 1");
  for (const auto& s : shapes) {
    if (s[0] < 1 || s[1] < 1 || s[2] < 1) {
      throw ValueError("partition: empty shape " + std::to_string(s[0]) + " x " +
                       std::to_string(s[1]) + " x " + std::to_string(s[2]));
    }
  }
  std::vector<std::vector<WorkSlab>> out(static_cast<size_t>(world));
  const int64_t n = int64_t(shapes.size());
  if (n >= world) {
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    auto voxels = [&](int64_t i) { return shapes[size_t(i)][0] * shapes[size_t(i)][1] * shapes[size_t(i)][2]; };
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return voxels(a) > voxels(b); });
    std::vector<int64_t> load(static_cast<size_t>(world), 0);
    for (int64_t i : order) {
      const size_t r = size_t(std::min_element(load.begin(), load.end()) - load.begin());
      load[r] += voxels(i);
      out[r].push_back({i, 0, shapes[size_t(i)][0], /*whole=*/true});
    }
    for (auto& slabs : out) {
      std::sort(slabs.begin(), slabs.end(),
                [](const WorkSlab& a, const WorkSlab& b) { return a.item < b.item; });
    }
    return out;
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t depth = shapes[size_t(i)][0];
    const int64_t units = (depth + align - 1) / align;  // slabs are cut between aligned units
    for (int r = 0; r < world; ++r) {
      const int64_t z0 = std::min(depth, units * r / world * align);
      const int64_t z1 = std::min(depth, units * (r + 1) / world * align);
      out[size_t(r)].push_back({i, z0, z1, /*whole=*/world == 1});
    }
  }
  return out;
}

std::vector<WorkSlab> partition_for_rank(const std::vector<std::array<int64_t, 3>>& shapes,
                                         int rank, int world, int64_t align) {
  if (rank < 0 || rank >= world) {
    throw ValueError("partition: rank " + std::to_string(rank) + " outside [0, " +
                     std::to_string(world) + ")");
  }
  return partition_work(shapes, world, align)[size_t(rank)];
}

}  // namespace unwedge
