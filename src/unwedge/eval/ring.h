// Shape of a filament's cross-section, for real data without ground truth: a microtubule (a
// hollow tube, ~25 nm across) running along Y shows in XZ as a ring, which the missing wedge
// smears along Z. Restoring the wedge should make the ring rounder (Z/X extent ratio -> 1) and
// raise the power in the wedge band. Conventions and example commands: docs/evaluation.md.
//
// Measurement (ring_measure):
// 1. Section: the volume averaged along the filament axis. A filament is rarely exactly parallel
//    to the axis, so by default the section centre is tracked along it (centre of mass of each
//    block of slices, a straight line fitted through them) and each slice is shifted onto the
//    line's middle (linear interpolation) before averaging.
// 2. Background and noise: median and 1.4826·MAD of the section's border frame (10 % of each
//    side, at least 2 pixels).
// 3. Centre: centre of mass of the density above background + `threshold`·noise.
// 4. Extent along each section axis: the outer half-maximum width of the profile through the
//    centre (a band of 2·band+1 lines averaged): on each side of the centre the highest value
//    (the wall), then outwards to where the profile falls below halfway between the background
//    and that wall (linear interpolation). For a ring it is the outer diameter; for an ellipse
//    it is the axis; it ignores clutter beyond the ring. When the profile does not fall below
//    half before the box edge, the extent runs to the edge and is flagged as clipped.
// 5. Also the second-moment extent sqrt(8·Var) of the above-threshold density (the diameter of a
//    thin circular ring), which sees everything in the section and so depends on clutter.
// Wedge-band power fraction: power of F(v − mean) inside the missing wedge of the tilt range,
// over the total power, DC excluded (rfft half-grid with Hermitian weights, corners included).
#pragma once
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "unwedge/eval/png.h"
#include "unwedge/ops/wedge.h"

namespace unwedge {

struct RingOptions {
  char axis = 'y';           ///< filament axis: 'y' (section [Z, X]) or 'x' (section [Z, Y])
  bool align = true;         ///< track the filament's centre along the axis before averaging
  int block = 16;            ///< slices per block when tracking the centre
  double threshold = 3.0;    ///< density counted above background + threshold·noise (centre, moments)
  int band = 2;              ///< profiles average the 2·band+1 lines through the centre
  WedgeGeometry wedge;       ///< tilt range for the wedge-band power fraction
  double deep_margin_deg = 10.0;  ///< deep wedge band: this far past the tilt limit
};

/// Outer half-maximum width of a 1-D profile around `centre` (index units): see the header
/// comment, step 4. `lo`/`hi` receive the crossing positions; `clipped` is set when a side
/// reached the end of the profile without falling below its half level.
struct ProfileExtent {
  double lo = 0.0, hi = 0.0;  ///< crossing positions, index units
  double width = 0.0;         ///< hi − lo
  bool clipped = false;
};
ProfileExtent profile_outer_extent(const std::vector<double>& p, double centre, double background);

/// Background (median) and noise (1.4826·MAD) of the border frame of a 2-D section.
struct BorderStats {
  double background = 0.0, noise = 0.0;
};
BorderStats section_border_stats(const at::Tensor& section);

/// The filament's section: volume [Z, Y, X] averaged along the axis (after tracking when
/// o.align). Returns float64 [Z, A] (A = X for axis y, Y for axis x). `slope_z`/`slope_a`
/// receive the fitted drift of the centre, voxels per slice (0 when !o.align).
at::Tensor ring_section(const at::Tensor& v, const RingOptions& o, double* slope_z = nullptr,
                        double* slope_a = nullptr);

/// The measurement of one volume.
struct RingMeasure {
  double centre_z = 0.0, centre_a = 0.0;   ///< section pixels
  ProfileExtent extent_z, extent_a;        ///< half-maximum extents, voxels
  double ratio_z_over_a = 0.0;             ///< extent_z.width / extent_a.width
  double moment_extent_z = 0.0, moment_extent_a = 0.0;  ///< sqrt(8 Var), voxels
  double moment_ratio_z_over_a = 0.0;
  BorderStats border;
  double slope_z = 0.0, slope_a = 0.0;     ///< tracked drift, voxels per slice
  double wedge_power_fraction = 0.0;       ///< power in the missing wedge / total (no DC)
  double deep_wedge_power_fraction = 0.0;  ///< same, deep band (margin past the tilt limit)
  at::Tensor section;                      ///< float64 [Z, A]
};

/// Measures the section of a given 2-D [Z, A] section (steps 2–5).
RingMeasure ring_measure_section(const at::Tensor& section, const RingOptions& o);
/// Measures a volume [Z, Y, X]: section, ring and wedge-band power fractions.
RingMeasure ring_measure(const at::Tensor& v, const RingOptions& o);

/// Power of F(v − mean) inside `band` (0/1 or bool [Z, Y, X/2+1]) over the total, DC excluded.
double wedge_power_fraction(const at::Tensor& v, const at::Tensor& band);

/// The measurement as JSON (everything but the section); `voxel_size` adds extents in Å.
nlohmann::json ring_to_json(const RingMeasure& m, const RingOptions& o, double voxel_size);

/// One row per volume: its (tracked) averaged section and its central section slice (the
/// middle slice along the axis), each on its own 0.5–99.5 % percentile contrast.
Image ring_montage(const std::vector<at::Tensor>& volumes, const RingOptions& o, int zoom);

}  // namespace unwedge
