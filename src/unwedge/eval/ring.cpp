#include "unwedge/eval/ring.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/eval/metrics.h"
#include "unwedge/ops/fourier.h"
#include "unwedge/ops/wedge_sign.h"

namespace unwedge {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The volume with the filament axis as dim 1: [Z, L, A], float64.
at::Tensor filament_major(const at::Tensor& v, char axis) {
  if (v.dim() != 3) throw ShapeError("ring: expected a 3-D volume [Z, Y, X], got " +
                                     std::to_string(v.dim()) + " dimensions");
  at::Tensor d = v.to(torch::kDouble);
  if (axis == 'y') return d;
  if (axis == 'x') return d.permute({0, 2, 1});
  throw ValueError(std::string("ring: filament axis '") + axis + "' is not y or x");
}

// Weighted centre of mass and variances of the density above background + t·noise.
struct Moments {
  double weight = 0.0, cz = kNaN, ca = kNaN, var_z = kNaN, var_a = kNaN;
};
Moments section_moments(const at::Tensor& s, const BorderStats& b, double threshold) {
  at::Tensor w = (s - (b.background + threshold * b.noise)).clamp_min(0.0);  // [Z, A]
  Moments m;
  m.weight = w.sum().item<double>();
  if (!(m.weight > 0)) return m;
  at::Tensor z = torch::arange(s.size(0), torch::kDouble).unsqueeze(1);  // [Z, 1]
  at::Tensor a = torch::arange(s.size(1), torch::kDouble).unsqueeze(0);  // [1, A]
  m.cz = (w * z).sum().item<double>() / m.weight;
  m.ca = (w * a).sum().item<double>() / m.weight;
  m.var_z = (w * (z - m.cz).pow(2)).sum().item<double>() / m.weight;
  m.var_a = (w * (a - m.ca).pow(2)).sum().item<double>() / m.weight;
  return m;
}

// Least-squares line y = c0 + c1 x; slope 0 with fewer than two points.
std::pair<double, double> line_fit(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
  if (n == 0) return {0.0, 0.0};
  double mx = 0, my = 0;
  for (size_t i = 0; i < n; ++i) mx += x[i], my += y[i];
  mx /= n, my /= n;
  double sxx = 0, sxy = 0;
  for (size_t i = 0; i < n; ++i) sxx += (x[i] - mx) * (x[i] - mx), sxy += (x[i] - mx) * (y[i] - my);
  double c1 = sxx > 0 ? sxy / sxx : 0.0;
  return {my - c1 * mx, c1};
}

}  // namespace

ProfileExtent profile_outer_extent(const std::vector<double>& p, double centre, double background) {
  const int64_t n = static_cast<int64_t>(p.size());
  if (n < 2) throw ValueError("ring: a profile needs at least 2 samples");
  const int64_t c = std::clamp<int64_t>(std::llround(centre), 0, n - 1);
  ProfileExtent e;
  // Left: the wall is the highest value in [0, c]; walk outwards to below its half level.
  int64_t il = std::max_element(p.begin(), p.begin() + c + 1) - p.begin();
  double half_l = background + 0.5 * (p[il] - background);
  e.lo = 0.0;
  bool found = false;
  for (int64_t i = il - 1; i >= 0; --i) {
    if (p[i] < half_l) {
      e.lo = i + (half_l - p[i]) / (p[i + 1] - p[i]);  // between i and i + 1
      found = true;
      break;
    }
  }
  if (!found || !(p[il] > background)) e.clipped = true;
  int64_t ir = std::max_element(p.begin() + c, p.end()) - p.begin();
  double half_r = background + 0.5 * (p[ir] - background);
  e.hi = static_cast<double>(n - 1);
  found = false;
  for (int64_t i = ir + 1; i < n; ++i) {
    if (p[i] < half_r) {
      e.hi = i - (half_r - p[i]) / (p[i - 1] - p[i]);  // between i - 1 and i
      found = true;
      break;
    }
  }
  if (!found || !(p[ir] > background)) e.clipped = true;
  e.width = e.hi - e.lo;
  return e;
}

BorderStats section_border_stats(const at::Tensor& section) {
  if (section.dim() != 2) throw ShapeError("ring: a section must be 2-D");
  const int64_t nz = section.size(0), na = section.size(1);
  if (nz < 5 || na < 5) {
    throw ShapeError("ring: the section is " + std::to_string(nz) + " x " + std::to_string(na) +
                     "; at least 5 x 5 is needed");
  }
  const int64_t bz = std::min(std::max<int64_t>(2, nz / 10), nz / 2 - 1);
  const int64_t ba = std::min(std::max<int64_t>(2, na / 10), na / 2 - 1);
  at::Tensor inner = torch::zeros({nz, na}, torch::kBool);
  inner.slice(0, bz, nz - bz).slice(1, ba, na - ba).fill_(true);
  at::Tensor vals = section.to(torch::kDouble).masked_select(inner.logical_not());
  BorderStats b;
  b.background = vals.median().item<double>();
  b.noise = 1.4826 * (vals - b.background).abs().median().item<double>();
  return b;
}

at::Tensor ring_section(const at::Tensor& v, const RingOptions& o, double* slope_z,
                        double* slope_a) {
  at::Tensor d = filament_major(v, o.axis);  // [Z, L, A]
  const int64_t nz = d.size(0), nl = d.size(1), na = d.size(2);
  double sz = 0.0, sa = 0.0;
  if (o.align && nl >= 2 * o.block) {
    if (o.block < 1) throw ValueError("ring: block must be >= 1, got " + std::to_string(o.block));
    const int64_t nb = nl / o.block;
    std::vector<double> l, cz, ca;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t l0 = b * nl / nb, l1 = (b + 1) * nl / nb;
      at::Tensor s = d.slice(1, l0, l1).mean(1);  // [Z, A]
      Moments m = section_moments(s, section_border_stats(s), o.threshold);
      if (!(m.weight > 0)) continue;
      l.push_back(0.5 * (l0 + l1 - 1));
      cz.push_back(m.cz);
      ca.push_back(m.ca);
    }
    sz = line_fit(l, cz).second;
    sa = line_fit(l, ca).second;
  }
  if (slope_z) *slope_z = sz;
  if (slope_a) *slope_a = sa;
  if (sz == 0.0 && sa == 0.0) return d.mean(1);
  // Shift slice l by the line's offset from the middle: out(z, a) = in(z + dz_l, a + da_l).
  const double lc = 0.5 * (nl - 1);
  at::Tensor off = torch::arange(nl, torch::kDouble) - lc;                 // [L]
  at::Tensor gz = torch::arange(nz, torch::kDouble).view({1, nz, 1}) +
                  (sz * off).view({nl, 1, 1});                             // [L, Z, 1]
  at::Tensor ga = torch::arange(na, torch::kDouble).view({1, 1, na}) +
                  (sa * off).view({nl, 1, 1});                             // [L, 1, A]
  auto norm = [](const at::Tensor& g, int64_t n) { return g * (2.0 / std::max<int64_t>(n - 1, 1)) - 1.0; };
  at::Tensor grid = torch::stack({norm(ga, na).expand({nl, nz, na}),
                                  norm(gz, nz).expand({nl, nz, na})}, -1);  // [L, Z, A, 2] (x, y)
  at::Tensor in = d.permute({1, 0, 2}).unsqueeze(1).contiguous();          // [L, 1, Z, A]
  namespace F = torch::nn::functional;
  at::Tensor out = F::grid_sample(in, grid, F::GridSampleFuncOptions()
                                                .mode(torch::kBilinear)
                                                .padding_mode(torch::kBorder)
                                                .align_corners(true));     // [L, 1, Z, A]
  return out.mean(0).squeeze(0);                                           // [Z, A]
}

RingMeasure ring_measure_section(const at::Tensor& section, const RingOptions& o) {
  if (o.band < 0) throw ValueError("ring: band must be >= 0, got " + std::to_string(o.band));
  RingMeasure r;
  r.section = section.to(torch::kDouble);
  r.border = section_border_stats(r.section);
  Moments m = section_moments(r.section, r.border, o.threshold);
  if (!(m.weight > 0)) {
    throw ValueError("ring: no density above background + " + std::to_string(o.threshold) +
                     " x noise in the section (is the filament axis right?)");
  }
  r.centre_z = m.cz;
  r.centre_a = m.ca;
  const int64_t nz = r.section.size(0), na = r.section.size(1);
  const int64_t iz = std::clamp<int64_t>(std::llround(m.cz), 0, nz - 1);
  const int64_t ia = std::clamp<int64_t>(std::llround(m.ca), 0, na - 1);
  at::Tensor pz = r.section.slice(1, std::max<int64_t>(0, ia - o.band),
                                  std::min<int64_t>(na, ia + o.band + 1)).mean(1).contiguous();  // [Z]
  at::Tensor pa = r.section.slice(0, std::max<int64_t>(0, iz - o.band),
                                  std::min<int64_t>(nz, iz + o.band + 1)).mean(0).contiguous();  // [A]
  std::vector<double> vz(pz.data_ptr<double>(), pz.data_ptr<double>() + nz);
  std::vector<double> va(pa.data_ptr<double>(), pa.data_ptr<double>() + na);
  r.extent_z = profile_outer_extent(vz, m.cz, r.border.background);
  r.extent_a = profile_outer_extent(va, m.ca, r.border.background);
  r.ratio_z_over_a = r.extent_a.width > 0 ? r.extent_z.width / r.extent_a.width : kNaN;
  r.moment_extent_z = std::sqrt(8.0 * m.var_z);
  r.moment_extent_a = std::sqrt(8.0 * m.var_a);
  r.moment_ratio_z_over_a = m.var_a > 0 ? std::sqrt(m.var_z / m.var_a) : kNaN;
  return r;
}

double wedge_power_fraction(const at::Tensor& v, const at::Tensor& band) {
  return wedge_band_power_fraction(v, band);  // ops/wedge_sign.h: the measure the sign uses
}

RingMeasure ring_measure(const at::Tensor& v, const RingOptions& o) {
  wedge_check(o.wedge);
  double sz = 0, sa = 0;
  at::Tensor s = ring_section(v, o, &sz, &sa);
  RingMeasure r = ring_measure_section(s, o);
  r.slope_z = sz;
  r.slope_a = sa;
  const std::array<int64_t, 3> shape{v.size(0), v.size(1), v.size(2)};
  at::Tensor missing = 1.0 - wedge_mask_rfft(shape, o.wedge, torch::kCPU);
  at::Tensor deep = wedge_band_rfft(shape, o.wedge, o.deep_margin_deg, torch::kCPU);
  r.wedge_power_fraction = wedge_power_fraction(v, missing);
  r.deep_wedge_power_fraction = wedge_power_fraction(v, deep);
  return r;
}

nlohmann::json ring_to_json(const RingMeasure& m, const RingOptions& o, double voxel_size) {
  const std::string a = o.axis == 'y' ? "x" : "y";  // the section's lateral axis
  auto num = [](double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); };
  nlohmann::json j;
  j["filament_axis"] = std::string(1, o.axis);
  j["section_axes"] = {"z", a};
  j["centre_vox"] = {num(m.centre_z), num(m.centre_a)};
  j["extent_z_vox"] = num(m.extent_z.width);
  j["extent_" + a + "_vox"] = num(m.extent_a.width);
  j["ratio_z_over_" + a] = num(m.ratio_z_over_a);
  j["clipped_z"] = m.extent_z.clipped;
  j["clipped_" + a] = m.extent_a.clipped;
  if (voxel_size > 0) {
    j["extent_z_A"] = num(m.extent_z.width * voxel_size);
    j["extent_" + a + "_A"] = num(m.extent_a.width * voxel_size);
  }
  j["moment_extent_z_vox"] = num(m.moment_extent_z);
  j["moment_extent_" + a + "_vox"] = num(m.moment_extent_a);
  j["moment_ratio_z_over_" + a] = num(m.moment_ratio_z_over_a);
  j["background"] = num(m.border.background);
  j["noise"] = num(m.border.noise);
  j["drift_z_per_slice"] = m.slope_z;
  j["drift_" + a + "_per_slice"] = m.slope_a;
  j["wedge_power_fraction"] = num(m.wedge_power_fraction);
  j["deep_wedge_power_fraction"] = num(m.deep_wedge_power_fraction);
  j["tilt_range_deg"] = {o.wedge.tilt_min_deg, o.wedge.tilt_max_deg};
  j["wedge_sign_flip"] = o.wedge.sign_flip;
  j["deep_margin_deg"] = o.deep_margin_deg;
  j["conventions"] =
      "extent = outer half-maximum width of the profile through the ring centre (band of " +
      std::to_string(2 * o.band + 1) +
      " lines) in the section averaged along the filament axis" +
      (o.align ? " (centre tracked, slices shifted onto it)" : "") +
      "; moment extent = sqrt(8 Var) of the density above background + " +
      std::to_string(o.threshold) +
      " x noise; wedge power fraction = power of F(v - mean) in the missing wedge / total, DC "
      "excluded";
  return j;
}

Image ring_montage(const std::vector<at::Tensor>& volumes, const RingOptions& o, int zoom) {
  if (volumes.empty()) throw ValueError("ring montage: no volumes");
  std::vector<Image> tiles;
  for (const at::Tensor& v : volumes) {
    at::Tensor s = ring_section(v, o);
    at::Tensor d = filament_major(v, o.axis);
    at::Tensor mid = d.select(1, d.size(1) / 2);  // [Z, A]
    tiles.push_back(image_from_slice(s, contrast_percentile(s, 0.005, 0.995), zoom));
    tiles.push_back(image_from_slice(mid, contrast_percentile(mid, 0.005, 0.995), zoom));
  }
  return image_montage(tiles, /*cols=*/2, /*gap=*/4);
}

}  // namespace unwedge
