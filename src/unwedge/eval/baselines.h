// Reference restorations every benchmark includes: a Gaussian low-pass and its oracle (the width
// chosen on the ground truth, a bound that any learned method should beat).
#pragma once
#include <vector>

#include <ATen/core/Tensor.h>

namespace unwedge {

/// v [Z, Y, X] multiplied in Fourier space by exp(-|k|² / (2 sigma²)), sigma in cycles/voxel
/// (orthonormal rfft). Returns float32.
at::Tensor lowpass_gaussian(const at::Tensor& v, double sigma);

/// The Gaussian low-pass of `input` whose sigma (from `sigmas`, cycles/voxel) maximises the
/// Pearson CC with `gt`.
struct OracleLowpass {
  double sigma = 0.0;
  double cc = 0.0;
  at::Tensor volume;  ///< float32 [Z, Y, X]
};
OracleLowpass lowpass_oracle(const at::Tensor& input, const at::Tensor& gt,
                             const std::vector<double>& sigmas = {0.02, 0.03, 0.04, 0.05, 0.07,
                                                                  0.1, 0.14, 0.2, 0.3});

}  // namespace unwedge
