#include "unwedge/model/normalize.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/io/mrc.h"

namespace unwedge {

namespace {
// torch::quantile accepts at most 2^24 elements; larger regions are subsampled by a stride.
constexpr int64_t kQuantileMax = int64_t(1) << 24;
// (p99 - p1) of a normal distribution in standard deviations: 2 * 2.3263.
constexpr double kP1P99Sigmas = 4.6527;
}  // namespace

NormMode norm_mode_parse(const std::string& text, const std::string& field) {
  if (text == "central") return NormMode::central;
  if (text == "percentile") return NormMode::percentile;
  throw ValueError(field + ": '" + text + "' is not a normalisation mode (central, percentile)");
}

const char* norm_mode_name(NormMode mode) {
  return mode == NormMode::central ? "central" : "percentile";
}

std::array<int64_t, 6> norm_central_box(const std::array<int64_t, 3>& shape, double fraction) {
  if (!(fraction > 0.0 && fraction <= 1.0)) {
    throw ValueError("norm central fraction: " + std::to_string(fraction) +
                     " is not in (0, 1]");
  }
  std::array<int64_t, 6> box{};
  for (int a = 0; a < 3; ++a) {
    int64_t n = std::max<int64_t>(1, std::llround(double(shape[a]) * fraction));
    n = std::min(n, shape[a]);
    int64_t lo = (shape[a] - n) / 2;
    box[2 * a] = lo;
    box[2 * a + 1] = lo + n;
  }
  return box;
}

NormStats norm_stats_of(const at::Tensor& region, NormMode mode, const std::string& what) {
  at::Tensor v = region.reshape({-1}).to(torch::kDouble);
  NormStats s;
  if (mode == NormMode::central) {
    s.mean = v.mean().item<double>();
    s.std = v.std(/*unbiased=*/false).item<double>();
  } else {
    int64_t stride = std::max<int64_t>(1, (v.numel() + kQuantileMax - 1) / kQuantileMax);
    at::Tensor sub = v.slice(0, 0, v.numel(), stride);
    at::Tensor q = torch::quantile(sub, torch::tensor({0.01, 0.5, 0.99}, torch::kDouble));
    s.mean = q[1].item<double>();
    s.std = (q[2].item<double>() - q[0].item<double>()) / kP1P99Sigmas;
  }
  if (!std::isfinite(s.mean) || !std::isfinite(s.std) || !(s.std > 0.0)) {
    throw ValueError(what + ": normalisation spread is " + std::to_string(s.std) +
                     " (constant or non-finite data cannot be standardised)");
  }
  return s;
}

NormStats norm_stats_compute(const at::Tensor& vol, NormMode mode, double fraction,
                             const std::string& what) {
  auto b = norm_central_box({vol.size(0), vol.size(1), vol.size(2)}, fraction);
  at::Tensor region = vol.slice(0, b[0], b[1]).slice(1, b[2], b[3]).slice(2, b[4], b[5]);
  return norm_stats_of(region, mode, what);
}

NormStats norm_stats_compute_pair(const at::Tensor& even, const at::Tensor& odd, NormMode mode,
                                  double fraction, const std::string& what) {
  auto b = norm_central_box({even.size(0), even.size(1), even.size(2)}, fraction);
  auto cut = [&](const at::Tensor& v) {
    return v.slice(0, b[0], b[1]).slice(1, b[2], b[3]).slice(2, b[4], b[5]);
  };
  return norm_stats_of(torch::stack({cut(even), cut(odd)}), mode, what);
}

NormStats norm_stats_compute(const std::vector<const MrcFile*>& files, NormMode mode,
                             double fraction) {
  if (files.empty() || files.size() > 2) {
    throw ValueError("normalisation statistics: 1 or 2 files expected, got " +
                     std::to_string(files.size()));
  }
  auto b = norm_central_box(files[0]->shape(), fraction);
  std::vector<at::Tensor> regions;
  std::string what;
  for (const MrcFile* f : files) {
    regions.push_back(f->read_box(b[0], b[1], b[2], b[3], b[4], b[5]));
    what += (what.empty() ? "" : "+") + f->path();
  }
  return norm_stats_of(regions.size() == 1 ? regions[0] : torch::stack(regions), mode, what);
}

at::Tensor norm_apply(const at::Tensor& x, const NormStats& s) {
  return (x - s.mean) / s.std;
}

at::Tensor norm_invert(const at::Tensor& x, const NormStats& s) {
  return x * s.std + s.mean;
}

}  // namespace unwedge
