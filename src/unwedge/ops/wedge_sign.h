// Which way round a tomogram stores its missing wedge, read from the data.
//
// For an asymmetric tilt range [a, b] the two conventions (ops/wedge.h: sign_flip off, on) put
// the missing region on opposite sides: mask([a, b]) or mask([-b, -a]). Packages disagree on
// which one their tomograms have (a mirrored axis, angles stored with the other sign, a
// reconstruction turned to Z by a rotation or by swapping axes: docs/projects.md). The data
// says which: frequencies that were never measured hold (almost) no power, so the convention
// whose missing band holds less of the volume's power is the one the volume was made with.
// The measure is the wedge-band power fraction `unwedge ring` reports as "wedge": the power of
// F(v − mean) in 1 − mask over the total, DC excluded, Hermitian-weighted on the rfft
// half-grid. The two bands share everything past both tilt limits, so the decision rests on
// the two slivers between |a| and |b| that one convention calls measured and the other missing.
#pragma once
#include <string>

#include <ATen/core/Tensor.h>

#include "unwedge/ops/wedge.h"

namespace unwedge {

/// Power of F(v − mean) inside `band` (0/1 or bool [Z, Y, X/2+1]) over the total, DC excluded,
/// for a volume v [Z, Y, X] (float64 arithmetic). NaN for a constant volume.
double wedge_band_power_fraction(const at::Tensor& v, const at::Tensor& band);

/// A range is symmetric (the sign does not change the mask) when |min + max| is below this.
constexpr double kWedgeSymmetricTolDeg = 0.5;

/// Whether [min, max] is symmetric about 0 within kWedgeSymmetricTolDeg.
bool wedge_range_symmetric(double tilt_min_deg, double tilt_max_deg);

/// The outcome of wedge_sign_detect.
struct WedgeSignChoice {
  bool decided = false;        ///< false: a symmetric range (the sign is irrelevant; no flip)
  bool sign_flip = false;      ///< the convention whose missing band holds less power
  double power_plus = 0.0;     ///< wedge-band power fraction with sign_flip off
  double power_minus = 0.0;    ///< same with sign_flip on
  /// The lower power over the higher (0..1); near 1 the data hardly tells the two apart (a
  /// nearly symmetric range, or a volume whose wedge has been filled, e.g. a restoration).
  double ratio = 1.0;
};

/// Decides the sign for tilt range [min, max] (degrees) from volume v [Z, Y, X]: the
/// convention whose missing band (margin 0) holds less power, measured on the central box of at
/// most `max_edge` voxels per axis (the band's shape does not depend on the box; a whole
/// tomogram's spectrum in float64 would not fit in memory). For a symmetric range nothing is
/// measured and `decided` is false. Throws ValueError for a bad range, ShapeError for a non-3-D v.
WedgeSignChoice wedge_sign_detect(const at::Tensor& v, double tilt_min_deg, double tilt_max_deg,
                                  int64_t max_edge = 192);

/// One line for the log: "tilt range A .. B: wedge sign +1 (missing-band power 0.71 % with +1,
/// 5.69 % with -1)", or that the range is symmetric. `what` names the volume.
std::string wedge_sign_describe(const WedgeSignChoice& c, double tilt_min_deg,
                                double tilt_max_deg, const std::string& what);

}  // namespace unwedge
