// Calibration of posterior spreads from the data alone (`unwedge sample --calibrate`).
//
// A user with real data has no ground truth to check whether a 90 % credible interval covers
// 90 %. The T_M∘R proxy gives a problem whose answer is known: take a cube of the input, restore
// it (x̂ = G(y)), turn the restoration by a cube rotation R that moves the missing wedge into
// measured territory, and observe it again as the microscope would, y' = T_M(R x̂) + n, with n
// noise of the data's level and band (T_M of white noise whose variance per coefficient is the
// input's measured power above 0.3 cycles/voxel, as the equivariant bootstrap uses). The
// sampler is run on y' exactly as on the data; its answer is compared with the known R x̂, and
// the spread is scaled by the smallest factor c with which the bounds cover the requested
// fraction of the cube's voxels (split-conformal on the pseudo-problem):
//
//   need_v = (t_v − m_v) / (u_v − m_v)  where t_v ≥ m_v, else (m_v − t_v) / (m_v − l_v),
//   c = the ⌈interval·(V + 1)⌉-th smallest need_v,
//
// with m, l, u the pseudo-problem's mean and bounds and t the known answer R x̂ mapped onto the
// mean's scale by the least-squares fit m ≈ a·R x̂ + b (the convention of eval's coverage
// metrics: a restoration's units are its own). The same c then multiplies the
// std and the bounds' distances from the mean of the run on the data (SampleOptions::
// spread_scale). What it assumes: errors on the pseudo-problem are like errors on the data.
// R x̂ is smoother than a real specimen (G denoises), so c may come out low; bench/RESULTS.md
// says by how much on simulated data.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "unwedge/infer/sample.h"
#include "unwedge/methods/method.h"

namespace unwedge {

/// What the calibration measured on its pseudo-problem.
struct SpreadCalibration {
  double scale = 1.0;            ///< c: the factor on std and bounds
  double coverage_before = 0;    ///< fraction of the cube's voxels inside the bounds, c = 1
  double coverage_after = 0;     ///< the same with c
  double std_error_cc = 0;       ///< corr(std, |mean − truth|) over the cube's voxels
  double noise_variance = 0;     ///< variance per coefficient of the added noise (normalised)
  int64_t side = 0;              ///< edge of the cube, voxels
  std::string rotation;          ///< the cube rotation R (CubeRotation::name)
  double seconds = 0;            ///< wall-clock time of the calibration
};

/// The smallest c >= 0 such that a fraction of at least `interval` of the voxels have
/// truth inside [mean − c (mean − lower), mean + c (upper − mean)] (the ⌈interval (V + 1)⌉-th
/// smallest of the per-voxel needs, the largest when that exceeds V). A voxel whose truth lies
/// off the mean where its bound is at the mean needs an infinite c. All tensors of one shape.
double conformal_bounds_scale(const at::Tensor& truth, const at::Tensor& mean,
                              const at::Tensor& lower, const at::Tensor& upper, double interval);

/// Runs the pseudo-problem on `cube` [s, s, s] (normalised, s >= 8) with `method` and the
/// sampling options `opts` (uq, draws, bounds, interval, tiling, wedge; spread_scale ignored),
/// and returns the factor. ValueError when the cube is not cubic or no cube rotation moves the
/// wedge of opts.wedge.
SpreadCalibration calibrate_spread(Method& method, const at::Tensor& cube, const SampleOptions& opts);

/// The summary.json entry of a calibration.
nlohmann::json spread_calibration_json(const SpreadCalibration& c, double interval);

}  // namespace unwedge
