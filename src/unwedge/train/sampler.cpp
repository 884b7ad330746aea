#include "unwedge/train/sampler.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "unwedge/core/error.h"

namespace unwedge {

namespace {

std::string shape_str(const at::Tensor& t) {
  std::string s;
  for (int64_t d : t.sizes()) s += (s.empty() ? "" : " x ") + std::to_string(d);
  return s;
}

}  // namespace

SubtomoSampler::SubtomoSampler(std::vector<SampleSource> sources, SamplerOptions opts)
    : sources_(std::move(sources)), opts_(opts) {
  if (sources_.empty()) throw ValueError("sampler: no tomograms given");
  const int64_t p = opts_.patch;
  if (p < 1) throw ValueError("patch: " + std::to_string(p) + " voxels is not positive");
  if (opts_.patch_z < 0) {
    throw ValueError("patch depth: " + std::to_string(opts_.patch_z) + " voxels is negative");
  }
  pz_ = opts_.patch_z > 0 ? opts_.patch_z : p;
  const int64_t pz = pz_;
  if (!(opts_.val_fraction >= 0.0 && opts_.val_fraction < 1.0)) {
    throw ValueError("val-fraction: " + std::to_string(opts_.val_fraction) +
                     " is not in [0, 1)");
  }
  grid_ = opts_.grid > 0 ? opts_.grid : std::max<int64_t>(1, p / 8);
  const bool pairs = sources_.front().b.defined();
  for (const auto& s : sources_) {
    if (!s.a.defined() || s.a.dim() != 3) {
      throw ShapeError(s.name + ": expected a volume [Z, Y, X]");
    }
    if (s.b.defined() != pairs) {
      throw ValueError(s.name + ": every tomogram must be a half pair, or none");
    }
    if (s.b.defined() && !s.b.sizes().equals(s.a.sizes())) {
      throw ShapeError(s.name + ": the halves differ in shape (" + shape_str(s.a) + " vs " +
                       shape_str(s.b) + " voxels, Z x Y x X)");
    }
    if (s.mask.defined() && !s.mask.sizes().equals(s.a.sizes())) {
      throw ShapeError(s.name + ": mask is " + shape_str(s.mask) + " voxels, the tomogram " +
                       shape_str(s.a));
    }
    const int64_t nz = s.a.size(0), ny = s.a.size(1), nx = s.a.size(2);
    if (pz > nz || p > ny || p > nx) {
      throw ShapeError(s.name + ": patch " + std::to_string(pz) + " x " + std::to_string(p) +
                       " x " + std::to_string(p) + " voxels (Z x Y x X) is larger than the " +
                       "volume (" + shape_str(s.a) + ", Z x Y x X); use a smaller --patch");
    }
    YBand band;
    if (opts_.val_fraction > 0.0) {
      int64_t h = std::max<int64_t>(p, std::llround(opts_.val_fraction * double(ny)));
      if (ny - h < p) {
        throw ShapeError(s.name + ": Y = " + std::to_string(ny) + " voxels cannot hold a " +
                         "training patch and a validation band of " + std::to_string(h) +
                         " voxels (patch " + std::to_string(p) + "); use a smaller --patch or " +
                         "--val-fraction 0");
      }
      band = {ny - h, ny};
    } else {
      band = {ny, ny};
    }
    bands_.push_back(band);
  }
  train_ = build(Split::train);
  if (train_.corners.size(0) == 0) {
    throw ValueError("sampler: the mask leaves no training position in any tomogram");
  }
  if (opts_.val_fraction > 0.0) {
    val_ = build(Split::val);
    if (val_.corners.size(0) == 0) {
      throw ValueError("sampler: the mask leaves no position in the validation band");
    }
  }
  // Candidates step by grid_ along every axis; a patch covers pz x p x p of them.
  double per_cell = double(grid_ * grid_ * grid_) / double(pz * p * p);
  patches_per_epoch_ =
      std::max<int64_t>(1, std::llround(double(train_.corners.size(0)) * per_cell));
}

SubtomoSampler::Candidates SubtomoSampler::build(Split split) const {
  const int64_t p = opts_.patch, pz = pz_;
  std::vector<at::Tensor> corners, limits;
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  for (size_t t = 0; t < sources_.size(); ++t) {
    const auto& s = sources_[t];
    const int64_t nz = s.a.size(0), nx = s.a.size(2);
    const YBand band = bands_[t];
    // Corner ranges: training patches end before the band, validation patches lie inside it.
    int64_t y_lo = split == Split::train ? 0 : band.y0;
    int64_t y_hi = split == Split::train ? band.y0 - p : band.y1 - p;  // inclusive
    if (y_hi < y_lo) continue;
    at::Tensor zs = torch::arange(0, nz - pz + 1, grid_, i64);
    at::Tensor ys = torch::arange(y_lo, y_hi + 1, grid_, i64);
    at::Tensor xs = torch::arange(0, nx - p + 1, grid_, i64);
    auto g = torch::meshgrid({zs, ys, xs}, "ij");  // 3 x [nzc, nyc, nxc]
    at::Tensor c = torch::stack({g[0].reshape(-1), g[1].reshape(-1), g[2].reshape(-1)}, 1);
    if (s.mask.defined()) {
      // Keep corners whose patch centre lies in the specimen.
      at::Tensor m = s.mask.to(torch::kCPU).ne(0);
      at::Tensor mc = m.index_select(0, zs + pz / 2).index_select(1, ys + p / 2)
                          .index_select(2, xs + p / 2);  // [nzc, nyc, nxc]
      c = c.index_select(0, mc.reshape(-1).nonzero().reshape(-1));
    }
    at::Tensor tomo = torch::full({c.size(0), 1}, int64_t(t), i64);
    corners.push_back(torch::cat({tomo, c}, 1));
    at::Tensor lim = torch::tensor({nz - pz, y_hi, nx - p}, i64).expand({c.size(0), 3});
    limits.push_back(lim);
  }
  if (corners.empty()) return {torch::zeros({0, 4}, i64), torch::zeros({0, 3}, i64)};
  return {torch::cat(corners, 0), torch::cat(limits, 0)};
}

std::vector<PatchPos> SubtomoSampler::draw(int64_t n, Split split, at::Generator& gen) const {
  const Candidates& c = split == Split::train ? train_ : val_;
  if (c.corners.size(0) == 0) throw ValueError("sampler: no validation band (val-fraction 0)");
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  at::Tensor idx = torch::randint(c.corners.size(0), {n}, gen, i64);          // [n]
  at::Tensor rows = c.corners.index_select(0, idx);                          // [n, 4]
  at::Tensor jitter = torch::randint(grid_, {n, 3}, gen, i64);               // [n, 3]
  at::Tensor zyx = torch::minimum(rows.slice(1, 1, 4) + jitter, c.limits.index_select(0, idx));
  at::Tensor all = torch::cat({rows.slice(1, 0, 1), zyx}, 1).contiguous();  // [n, 4]
  auto acc = all.accessor<int64_t, 2>();
  std::vector<PatchPos> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = {acc[i][0], acc[i][1], acc[i][2], acc[i][3]};
  return out;
}

PatchBatch SubtomoSampler::extract(const std::vector<PatchPos>& pos) const {
  const int64_t p = opts_.patch, pz = pz_;
  std::vector<at::Tensor> a, b;
  a.reserve(pos.size());
  PatchBatch out;
  for (const auto& q : pos) {
    out.tomo.push_back(q.tomo);
    const auto& s = sources_.at(size_t(q.tomo));
    auto cut = [&](const at::Tensor& v) {
      return v.slice(0, q.z, q.z + pz).slice(1, q.y, q.y + p).slice(2, q.x, q.x + p);
    };
    a.push_back(cut(s.a));
    if (s.b.defined()) b.push_back(cut(s.b));
  }
  out.a = torch::stack(a, 0).unsqueeze(1);  // [B, 1, Pz, P, P]
  if (!b.empty()) out.b = torch::stack(b, 0).unsqueeze(1);
  return out;
}

at::Tensor auto_mask_local_variance(const at::Tensor& vol, int64_t cell, double quantile) {
  if (cell < 1) throw ValueError("auto-mask cell: " + std::to_string(cell) + " voxels");
  if (!(quantile >= 0.0 && quantile < 1.0)) {
    throw ValueError("auto-mask quantile: " + std::to_string(quantile) + " is not in [0, 1)");
  }
  namespace F = torch::nn::functional;
  at::Tensor x = vol.to(torch::kFloat).unsqueeze(0).unsqueeze(0);  // [1, 1, Z, Y, X]
  auto pool = F::AvgPool3dFuncOptions(cell).stride(cell).ceil_mode(true);
  at::Tensor m1 = F::avg_pool3d(x, pool);
  at::Tensor m2 = F::avg_pool3d(x * x, pool);
  at::Tensor sd = (m2 - m1 * m1).clamp_min(0).sqrt();  // [1, 1, z, y, x] local std per cell
  at::Tensor flat = sd.reshape(-1).to(torch::kDouble);
  int64_t stride = std::max<int64_t>(1, flat.numel() / (int64_t(1) << 24) + 1);
  double thr = torch::quantile(flat.slice(0, 0, flat.numel(), stride), quantile).item<double>();
  at::Tensor keep = sd.ge(thr).to(torch::kFloat);
  at::Tensor up = F::interpolate(keep, F::InterpolateFuncOptions()
                                           .size(std::vector<int64_t>{vol.size(0), vol.size(1),
                                                                      vol.size(2)})
                                           .mode(torch::kNearest));
  return up.squeeze(0).squeeze(0).gt(0.5);  // [Z, Y, X]
}

}  // namespace unwedge
