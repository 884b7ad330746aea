#include "unwedge/ops/wedge_sign.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/ops/fourier.h"

namespace unwedge {

double wedge_band_power_fraction(const at::Tensor& v, const at::Tensor& band) {
  if (v.dim() != 3) throw ShapeError("wedge power fraction: expected a 3-D volume");
  at::Tensor d = v.to(torch::kCPU).to(torch::kDouble);
  d = d - d.mean();
  at::Tensor f = fourier_rfft3(d);                                      // [Z, Y, X/2+1]
  const int64_t nh = v.size(2) / 2 + 1;
  at::Tensor w = fourier_half_multiplicity(v.size(2), torch::kCPU).to(torch::kDouble)
                     .view({1, 1, nh});                                 // [1, 1, X/2+1]
  at::Tensor p = w * f.abs().pow(2);                                    // [Z, Y, X/2+1]
  p.index_put_({0, 0, 0}, 0.0);                                         // DC
  if (band.sizes() != p.sizes()) throw ShapeError("wedge power fraction: band shape mismatch");
  const double total = p.sum().item<double>();
  if (!(total > 0)) return std::numeric_limits<double>::quiet_NaN();
  return (p * band.to(torch::kCPU).to(torch::kDouble)).sum().item<double>() / total;
}

bool wedge_range_symmetric(double tilt_min_deg, double tilt_max_deg) {
  return std::abs(tilt_min_deg + tilt_max_deg) < kWedgeSymmetricTolDeg;
}

WedgeSignChoice wedge_sign_detect(const at::Tensor& v_in, double tilt_min_deg,
                                  double tilt_max_deg, int64_t max_edge) {
  WedgeGeometry g{tilt_min_deg, tilt_max_deg, false};
  wedge_check(g);
  if (v_in.dim() != 3) throw ShapeError("wedge sign: expected a 3-D volume [Z, Y, X]");
  WedgeSignChoice c;
  if (wedge_range_symmetric(tilt_min_deg, tilt_max_deg)) return c;
  at::Tensor v = v_in;
  for (int64_t d = 0; d < 3; ++d) {  // the central box
    const int64_t n = v.size(d), m = std::min(n, std::max<int64_t>(max_edge, 8));
    v = v.narrow(d, (n - m) / 2, m);
  }
  const std::array<int64_t, 3> shape{v.size(0), v.size(1), v.size(2)};
  c.power_plus = wedge_band_power_fraction(v, 1.0 - wedge_mask_rfft(shape, g, torch::kCPU));
  g.sign_flip = true;
  c.power_minus = wedge_band_power_fraction(v, 1.0 - wedge_mask_rfft(shape, g, torch::kCPU));
  if (!std::isfinite(c.power_plus) || !std::isfinite(c.power_minus)) return c;  // constant v
  c.decided = true;
  c.sign_flip = c.power_minus < c.power_plus;
  const double lo = std::min(c.power_plus, c.power_minus);
  const double hi = std::max(c.power_plus, c.power_minus);
  c.ratio = hi > 0 ? lo / hi : 1.0;
  return c;
}

std::string wedge_sign_describe(const WedgeSignChoice& c, double tilt_min_deg,
                                double tilt_max_deg, const std::string& what) {
  if (!c.decided) {
    return fmt::format("{}: tilt range {} .. {} degrees is symmetric: the wedge sign does not "
                       "matter", what, tilt_min_deg, tilt_max_deg);
  }
  return fmt::format(
      "{}: tilt range {} .. {} degrees: wedge sign {} from the data (missing-band power "
      "{:.2f} % with +1, {:.2f} % with -1{}; --wedge-sign +1 or -1 overrides)",
      what, tilt_min_deg, tilt_max_deg, c.sign_flip ? "-1" : "+1", 100 * c.power_plus,
      100 * c.power_minus,
      c.ratio > 0.9 ? "; nearly equal: check it with `unwedge ring`" : "");
}

}  // namespace unwedge
