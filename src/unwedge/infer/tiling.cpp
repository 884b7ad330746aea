#include "unwedge/infer/tiling.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "unwedge/core/error.h"

namespace unwedge {

namespace {

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

}  // namespace

TileAxis tile_axis_make(int64_t dim, int64_t tile, int64_t overlap, int64_t align,
                        int64_t halo) {
  if (dim < 1 || tile < 1 || align < 1) {
    throw ValueError("tile plan: dim " + std::to_string(dim) + ", tile " + std::to_string(tile) +
                     ", align " + std::to_string(align) + " must be positive");
  }
  if (overlap < 0 || overlap >= tile) {
    throw ValueError("overlap: " + std::to_string(overlap) + " voxels must be in [0, tile " +
                     std::to_string(tile) + ")");
  }
  TileAxis a;
  a.dim = dim;
  a.padded = round_up(dim, align);
  a.tile = std::min(round_up(tile, align), a.padded);
  if (overlap >= 2 * halo) {
    a.margin = halo;
  } else {
    a.margin = overlap / 4;
  }
  a.ramp = std::max<int64_t>(0, overlap - 2 * a.margin);
  int64_t stride = std::max(align, (a.tile - overlap) / align * align);
  for (int64_t s = 0;; s += stride) {
    if (s + a.tile >= a.padded) {
      a.starts.push_back(a.padded - a.tile);
      break;
    }
    a.starts.push_back(s);
  }
  return a;
}

at::Tensor TileAxis::window(size_t i) const {
  at::Tensor w = torch::ones({tile}, torch::kFloat);
  // ramp: sin^2 over `ramp` voxels, sampled at voxel centres (never exactly 0 or 1).
  at::Tensor r;
  if (ramp > 0) {
    r = torch::arange(ramp, torch::kFloat).add(0.5).mul(M_PI / 2.0 / double(ramp)).sin().pow(2);
  }
  const bool left_interior = starts[i] > 0;
  const bool right_interior = starts[i] + tile < padded;
  if (left_interior) {
    w.slice(0, 0, margin).zero_();
    if (ramp > 0) w.slice(0, margin, margin + ramp).copy_(r);
  }
  if (right_interior) {
    w.slice(0, tile - margin, tile).zero_();
    if (ramp > 0) {
      w.slice(0, tile - margin - ramp, tile - margin).mul_(r.flip(0));
    }
  }
  return w;
}

at::Tensor TileAxis::weight_sum() const {
  at::Tensor s = torch::zeros({padded}, torch::kFloat);
  for (size_t i = 0; i < starts.size(); ++i) s.slice(0, starts[i], starts[i] + tile) += window(i);
  return s;
}

TilePlan tile_plan_make(const std::array<int64_t, 3>& shape, const std::array<int64_t, 3>& tile,
                        int64_t overlap, const std::array<int64_t, 3>& align,
                        const std::array<int64_t, 3>& receptive_field) {
  TilePlan p;
  for (int a = 0; a < 3; ++a) {
    int64_t halo = receptive_field[a] / 2;
    // A tile that covers the whole (padded) axis has no interior edge: its overlap is moot.
    int64_t t = tile[a];
    int64_t ov = std::min(overlap, std::max<int64_t>(0, t - 1));
    p.axes[a] = tile_axis_make(shape[a], t, ov, align[a], halo);
  }
  return p;
}

at::Tensor tile_window_3d(const at::Tensor& wz, const at::Tensor& wy, const at::Tensor& wx) {
  return wz.view({-1, 1, 1}) * wy.view({1, -1, 1}) * wx.view({1, 1, -1});  // [Z, Y, X]
}

at::Tensor tile_accumulator_rebase(const at::Tensor& acc, int64_t base, int64_t z0, int64_t depth,
                                   int64_t ny, int64_t nx) {
  const std::vector<int64_t> shape{depth, ny, nx};
  if (!acc.defined() || acc.sizes() != at::IntArrayRef(shape) || !acc.is_contiguous()) {
    at::Tensor fresh = torch::zeros(shape, torch::kFloat);
    if (acc.defined() && base + acc.size(0) > z0) {
      const int64_t keep_end = base + acc.size(0);
      fresh.slice(0, 0, keep_end - z0).copy_(acc.slice(0, z0 - base, keep_end - base));
    }
    return fresh;
  }
  // In place (the accumulator of a large tomogram is the biggest buffer of a restoration): the
  // sections [z0, base + depth) move to the front, the rest is zeroed. Section by section, front
  // to back, so a source is read before anything overwrites it.
  at::Tensor out = acc;
  const int64_t shift = z0 - base, keep = std::max<int64_t>(0, depth - shift);
  if (shift > 0) {
    for (int64_t i = 0; i < keep; ++i) out[i].copy_(out[i + shift]);
  }
  out.slice(0, keep, depth).zero_();
  return out;
}

}  // namespace unwedge
