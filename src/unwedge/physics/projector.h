// Tilt-series projection about Y, its exact adjoint (back-projection) and weighted
// back-projection (WBP).
//
// Geometry (voxel units, centred: x_c = x - (X-1)/2, z_c = z - (Z-1)/2, detector
// u_c = u - (X_det-1)/2): the projection at tilt theta integrates along the ray
// direction (x, z) = (-sin theta, cos theta), i.e. detector coordinate u = x cos theta + z sin theta.
// By the Fourier-slice theorem it measures the frequency line phi = atan2(kz, kx) = theta, which
// is what ops/wedge.h calls measured for a range containing theta. (DESIGN §1 writes the beam as
// (sin theta, cos theta); with that beam a tilt theta would fill phi = -theta and an asymmetric
// range would disagree with the masks, so the projector follows the masks. For symmetric
// ranges both read the same.)
// The tilt axis Y maps to detector rows one to one.
//
// Discretisation (Joseph's method): each ray is stepped one voxel at a time along the axis it is
// closest to (z for |theta| <= 45°, x beyond), the volume is interpolated linearly across the
// other axis (zero outside), and the samples are summed times the path length per step
// (1/|cos theta| or 1/|sin theta|); a line integral is in voxel-value x voxels. At theta = 0 it
// is the exact column sum, at 90° the exact row sum. backproject is the exact transpose of project
// (same bilinear weights), so <project(x), y> = <x, backproject(y)> to float rounding.
// Implementation: each tilt is a sparse matrix [X_det, Z*X] (two interpolation weights per ray
// step) shared by all Y rows, applied as one sparse-dense product to the volume viewed as
// [Z*X, Y]; backproject multiplies by the same entries transposed. Tensors run on the input's
// device; tilts are processed in groups so the matrices stay under ~100 MB.
//
// CTF and image formation (dose, noise) belong to the simulator (src/unwedge/sim).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace unwedge {

/// Tilt series of `volume` [Z, Y, X] at `angles_deg` -> [n_tilts, Y, det_width]
/// (det_width <= 0 means X). Throws ShapeError/ValueError naming the offending value.
at::Tensor project(const at::Tensor& volume, const std::vector<double>& angles_deg,
                   int64_t det_width = 0);

/// Exact adjoint of project: series [n_tilts, Y, X_det] -> volume [thickness, Y, width]
/// (width <= 0 means X_det).
at::Tensor backproject(const at::Tensor& series, const std::vector<double>& angles_deg,
                       int64_t thickness, int64_t width = 0);

/// The 1D weighting applied to every projection row.
enum class WbpFilter {
  ramp,       ///< |k| (Kak-Slaney discrete ramp: correct DC, no cupping)
  sirt_like,  ///< ramp . [1 - (1 - a/|k|)^N], a = 1/n_pad: mimics N SIRT iterations
  none,       ///< plain back-projection (blurred by 1/|k|)
};

/// "ramp", "sirt-like" or "none"; anything else is a ValueError naming `what` and the value.
WbpFilter wbp_filter_parse(const std::string& name, const std::string& what);

/// Options of weighted back-projection.
struct WbpOptions {
  WbpFilter filter = WbpFilter::ramp;  ///< row weighting
  int sirt_iterations = 10;            ///< N of the SIRT-like filter (>= 1)
  /// Hamming apodisation: 0.54 + 0.46 cos(pi k / lowpass) for |k| < lowpass, 0 beyond,
  /// k in cycles/pixel (Nyquist 0.5). 0 = no apodisation.
  double lowpass = 0.0;
};

/// The 1D weight [n_pad/2 + 1] (rfft layout, float32) for rows of `det_width` pixels padded
/// to n_pad = 2 * det_width; times the angular step factor is what wbp multiplies rows by.
at::Tensor wbp_filter_1d(int64_t det_width, const WbpOptions& opts, const at::TensorOptions& to);

/// Weighted back-projection: series [n_tilts, Y, X_det] -> tomogram [thickness, Y, width]
/// (width <= 0 means X_det). Each row is weighted in 1D Fourier (zero-padded to 2 X_det),
/// scaled by its angular step (radians, half the distance between its two neighbours; the full
/// distance to its one neighbour at the ends), and back-projected, so a noise-free full-range WBP of project(x) reproduces x's
/// scale.
at::Tensor wbp(const at::Tensor& series, const std::vector<double>& angles_deg,
               int64_t thickness, const WbpOptions& opts = {}, int64_t width = 0);

}  // namespace unwedge
