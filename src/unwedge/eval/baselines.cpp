#include "unwedge/eval/baselines.h"

#include <string>

#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/eval/metrics.h"
#include "unwedge/ops/fourier.h"

namespace unwedge {

at::Tensor lowpass_gaussian(const at::Tensor& v, double sigma) {
  if (v.dim() != 3) throw ShapeError("low-pass: expected a [Z, Y, X] volume");
  if (!(sigma > 0)) throw ValueError("low-pass: sigma " + std::to_string(sigma) + " must be > 0");
  at::Tensor r = rfft_radius({v.size(0), v.size(1), v.size(2)});  // [Z, Y, X/2+1]
  at::Tensor f = fourier_rfft3(v.to(torch::kDouble));
  f = f * torch::exp(-r * r / (2 * sigma * sigma));
  return fourier_irfft3(f, {v.size(0), v.size(1), v.size(2)}).to(torch::kFloat);
}

OracleLowpass lowpass_oracle(const at::Tensor& input, const at::Tensor& gt,
                             const std::vector<double>& sigmas) {
  if (sigmas.empty()) throw ValueError("low-pass oracle: no sigma to try");
  OracleLowpass best;
  best.cc = -2.0;
  for (double s : sigmas) {
    at::Tensor v = lowpass_gaussian(input, s);
    double cc = metric_pearson_cc(v, gt);
    if (cc > best.cc) best = {s, cc, v};
  }
  return best;
}

}  // namespace unwedge
