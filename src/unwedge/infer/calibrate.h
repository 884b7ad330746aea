// Calibration of posterior spreads from the data alone (`unwedge sample --calibrate`).
//
// A user with real data has no ground truth to check whether a 90 % credible interval covers
// 90 %. The T_M∘R proxy gives a problem whose answer is known: take a cube of the input (or
// several spread over it, their voxels pooled: calibration_cube_corners), restore it
// (x̂ = G(y)), turn the restoration by a cube rotation R that moves the missing wedge into
// measured territory, and observe it again as the microscope would, y' = T_M(R x̂) + n, with n
// noise of the data's level and band: with both halves, the data's own noise (even − odd)/√2
// of the same cube (its level and colour), else T_M of white noise whose variance per
// coefficient is the input's measured power above 0.3 cycles/voxel (as the bootstrap uses). The
// sampler is run on y' exactly as on the data; its answer is compared with the known R x̂, and
// two factors are read off it. The bounds are scaled by the smallest factor c with which they
// cover the requested fraction of the cube's voxels (split-conformal on the pseudo-problem):
//
//   need_v = (t_v − m_v) / (u_v − m_v)  where t_v ≥ m_v, else (m_v − t_v) / (m_v − l_v),
//   c = the ⌈interval·(V + 1)⌉-th smallest need_v,
//
// with m, l, u the pseudo-problem's mean and bounds and t the known answer R x̂ mapped onto the
// mean's scale by the least-squares fit m ≈ a·R x̂ + b (the convention of eval's coverage
// metrics: a restoration's units are its own). The std is scaled by the factor s whose Gaussian
// intervals m ± z_p·s·std are nearest their nominal mass p over the whole reliability diagram
// (p = 50, 80, 90, 95 %: the s with the smallest largest gap |coverage_p − p|). One factor cannot
// put every level on the diagonal when the errors are heavier-tailed than a Gaussian of the
// stated std (as restorations' are: a std fitted at 90 % alone over-covers 50 % by 10-20
// points), so s spreads the miss over the levels; the bounds keep their own factor for their
// own level, and each level of the reliability diagram gets its own split-conformal multiplier
// of the scaled std (level_z: the interval a user should read for 50/80/90/95 %, recorded in
// summary.json and used by the coverage figures when --truth is given), for the whole volume
// and for each Fourier band (measured band, missing wedge: the band-passed draws' spread errs
// differently from the whole's). c multiplies the bounds' distances from the mean and s the
// std of the run on the data (SampleOptions::bounds_scale, std_scale). What it assumes: errors
// on the pseudo-problem are like errors on the data.
// R x̂ is smoother than a real specimen (G denoises), so c may come out low; bench/RESULTS.md
// says by how much on simulated data.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "unwedge/infer/sample.h"
#include "unwedge/methods/method.h"

namespace unwedge {

/// What the calibration measured on its pseudo-problem.
struct SpreadCalibration {
  double bounds_scale = 1.0;     ///< c: the factor on the bounds' distances from the mean
  double std_scale = 1.0;        ///< s: the factor on the std
  double coverage_before = 0;    ///< fraction of the cube's voxels inside the bounds, c = 1
  double coverage_after = 0;     ///< the same with c
  std::vector<double> levels;              ///< nominal masses of the std's reliability diagram
  std::vector<double> reliability_before;  ///< Gaussian coverage of mean ± z·std per level, s = 1
  std::vector<double> reliability_after;   ///< the same with s
  std::vector<double> level_z;  ///< per level, the multiplier of the scaled std (s·std) whose
                                ///< interval mean ± level_z·s·std covers the level's mass of the
                                ///< known answer (split-conformal, like c); the Gaussian z where
                                ///< no finite multiplier does
  std::vector<double> level_z_measured, level_z_wedge;  ///< the same for the volumes restricted
                                ///< to the measured band and to the missing wedge (the std there
                                ///< the spread of the band-passed draws, eval's posterior_band)
  double std_error_cc = 0;       ///< corr(std, |mean − truth|) over the cube's voxels
  std::string noise;             ///< halves ((even − odd)/√2) or highfreq (white, noise_variance)
  double noise_variance = 0;     ///< highfreq: variance per coefficient (normalised; the
                                 ///< cubes' mean)
  int64_t side = 0;              ///< edge of the cubes, voxels
  int64_t cubes = 1;             ///< how many cubes were pooled
  std::string rotation;          ///< the cube rotations R (CubeRotation::name), one per cube
  double seconds = 0;            ///< wall-clock time of the calibration
};

/// The smallest c >= 0 such that a fraction of at least `interval` of the voxels have
/// truth inside [mean − c (mean − lower), mean + c (upper − mean)] (the ⌈interval (V + 1)⌉-th
/// smallest of the per-voxel needs, the largest when that exceeds V). A voxel whose truth lies
/// off the mean where its bound is at the mean needs an infinite c. All tensors of one shape.
/// The factor s > 0 that puts the Gaussian intervals mean ± z_p·s·std nearest their nominal
/// masses p (`levels`, each in (0, 1)): the smallest max_p |coverage_p(s) − p| over a grid of
/// 4001 log-spaced factors spanning the voxels' |truth − mean| / (z_p std), the smallest such s
/// on ties; coverage_p(s) the fraction of voxels with |truth − mean| <= z_p·s·std. Voxels with
/// std 0 count as covered only where truth = mean. ValueError when no voxel has std > 0 and
/// truth off the mean (nothing to scale), ShapeError on differing shapes.
double gaussian_reliability_scale(const at::Tensor& truth, const at::Tensor& mean,
                                  const at::Tensor& std, const std::vector<double>& levels = {0.5, 0.8, 0.9, 0.95});

/// Per level p of `levels`, the split-conformal multiplier q_p of `std`: the ⌈p·(V + 1)⌉-th
/// smallest |truth − mean| / std over the V voxels (the largest when that exceeds V), so that
/// mean ± q_p·std covers at least p of them; a voxel with std 0 needs 0 on its mean, +inf off it.
std::vector<double> conformal_level_multipliers(const at::Tensor& truth, const at::Tensor& mean,
                                                const at::Tensor& std, const std::vector<double>& levels);

double conformal_bounds_scale(const at::Tensor& truth, const at::Tensor& mean,
                              const at::Tensor& lower, const at::Tensor& upper, double interval);

/// Where the calibration's cubes lie: the corners [z, y, x] of at most `max_cubes` cubes of edge
/// `side` in a volume of `shape`, spread evenly: per axis as many as cover it (first flush with
/// the start, last with the end), fewer along the axis with the most until the grid holds at
/// most `max_cubes`; one along an axis is centred. ValueError when the cube does not fit or
/// max_cubes < 1.
std::vector<std::array<int64_t, 3>> calibration_cube_corners(std::array<int64_t, 3> shape,
                                                             int64_t side, int64_t max_cubes);

/// Runs the pseudo-problem on each of `cubes` ([s, s, s], normalised, s >= 8; cube k with
/// rotation and noise of seed (opts.posterior.seed ^ 0x5eedca1b) + k) with `method` and the
/// sampling options `opts` (uq, draws, bounds, interval, tiling, wedge; std_scale and
/// bounds_scale ignored), pools every cube's voxels, and returns the factors. `other_halves`:
/// the same cubes of the other half tomogram (the noise is then the data's own), or empty.
/// ValueError when a cube is not cubic or no cube rotation moves the wedge of
/// opts.wedge; ShapeError when the cubes differ in edge or the other half's in number or shape.
SpreadCalibration calibrate_spread(Method& method, const std::vector<at::Tensor>& cubes,
                                   const SampleOptions& opts,
                                   const std::vector<at::Tensor>& other_halves = {});

/// One cube.
SpreadCalibration calibrate_spread(Method& method, const at::Tensor& cube, const SampleOptions& opts,
                                   const at::Tensor& other_half = {});

/// The summary.json entry of a calibration.
nlohmann::json spread_calibration_json(const SpreadCalibration& c, double interval);

}  // namespace unwedge
