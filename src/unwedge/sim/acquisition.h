// Acquisition of a simulated tilt series: tilt scheme and dose, weak-phase image formation with
// amplitude contrast, optional CTF with phase flipping, radiation damage (exposure filter),
// inelastic attenuation by the ice, per-tilt misalignment, Poisson shot noise, and the two
// half data sets (frame-style or tilt-style split).
//
// Per tilt theta (processed data d, protein bright, what unwedge reconstructs):
//   phi   = sigma(kV) * U_protein * voxel_A * project(potential, theta)       [rad]
//   I     = 1 + 2 F^-1[ CTF(k) E_n(k) F(phi) ], shifted by the tilt's misalignment
//   flat  = dose_tilt * voxel_A^2 * exp(-t / (mfp cos theta))                 [electrons/pixel]
//   counts ~ Poisson(flat * I);   d = (1 - counts / flat) / 2   (phase-flipped when asked)
// CTF(k) = -(sqrt(1 - A^2) sin chi + A cos chi), chi = pi lambda df k^2 - pi/2 Cs lambda^3 k^4
// (df > 0 underfocus); without a CTF the transfer is -1 (ideal phase contrast).
// E_n(k) = exp(-N / (2 Ne(k))), Ne(k) = 0.245 k^-1.665 + 2.81 e/Å^2 (Grant & Grigorieff 2015,
// 300 kV; x0.8 at 200 kV), N the dose received before the middle of this exposure.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace unwedge {

enum class TiltOrder { dose_symmetric, sequential };
enum class HalfSplit { frame, tilt };

/// "dose-symmetric" / "sequential"; "frame" / "tilt". Parsing throws ValueError listing names.
std::string tilt_order_name(TiltOrder o);
TiltOrder tilt_order_parse(const std::string& s);
std::string half_split_name(HalfSplit s);
HalfSplit half_split_parse(const std::string& s);

struct AcquisitionParams {
  double tilt_min_deg = -60.0;        ///< lowest tilt, degrees
  double tilt_max_deg = 60.0;         ///< highest tilt, degrees
  double tilt_step_deg = 3.0;         ///< increment, degrees
  TiltOrder order = TiltOrder::dose_symmetric;  ///< acquisition order (dose accumulation)
  double total_dose = 100.0;          ///< e-/Å^2 over the whole series, split evenly
  double voltage_kV = 300.0;          ///< acceleration voltage
  double protein_potential_V = 1.5;   ///< excess potential of protein over ice (gt value 1), V
  double amplitude_contrast = 0.07;   ///< A, fraction
  bool ctf = true;                    ///< apply a CTF (else ideal transfer -1)
  double defocus_um = 3.0;            ///< underfocus, µm (> 0)
  double cs_mm = 2.7;                 ///< spherical aberration, mm
  bool phase_flip = true;             ///< flip the phases of the data where the CTF is negative
  bool radiation_damage = true;       ///< exposure filter by accumulated dose
  double thickness_A = 250.0;         ///< ice slab thickness (attenuation), Å
  double mean_free_path_nm = 350.0;   ///< inelastic mean free path (energy filter), nm; 0 = none
  double misalign_px = 0.0;           ///< std of random per-tilt shifts (x and y), pixels
  HalfSplit split = HalfSplit::frame; ///< how the two halves are made
  bool noise = true;                  ///< Poisson noise (off: all series are noise-free)
  uint64_t seed = 0;
};

/// Validates the parameters; throws ValueError naming the field and value.
void acquisition_check(const AcquisitionParams& p);

/// Tilt angles min, min+step, ... <= max (ascending, degrees).
std::vector<double> tilt_angles(double min_deg, double max_deg, double step_deg);
/// Acquisition order: indices into ascending `angles`. Dose-symmetric (Hagen): the tilt
/// nearest 0 first, then alternating sides in groups of two; sequential: ascending.
std::vector<int64_t> tilt_acquisition_order(const std::vector<double>& angles, TiltOrder o);

/// Electron wavelength (Å) and interaction constant (rad / (V Å)) at `kV`.
double electron_wavelength_A(double kV);
double interaction_constant(double kV);

/// The CTF on the rfft grid of a [Y, X] image (float32 [Y, X/2+1]) with pixel size `pixel_A`.
at::Tensor ctf_2d(int64_t ny, int64_t nx, double pixel_A, double defocus_um, double cs_mm,
                  double kV, double amplitude_contrast);

/// A simulated acquisition; series are [n_tilts, Y, X] in ascending angle order, as processed
/// data d (protein bright, phase-flipped when asked).
struct Acquisition {
  std::vector<double> angles;      ///< ascending, degrees
  std::vector<int64_t> order;      ///< acquisition order (indices into angles)
  std::vector<double> dose;        ///< e-/Å^2 per tilt (angles' order)
  std::vector<double> shift_x, shift_y;  ///< misalignment per tilt, pixels
  at::Tensor clean;                ///< noise-free d (same geometry and filters)
  at::Tensor full, even, odd;      ///< all dose; halves (frame split: each tilt's dose halved)
  std::vector<double> even_angles, odd_angles;  ///< angles of even / odd series
  at::Tensor even_clean, odd_clean;  ///< noise-free versions of the half series
};

/// Runs the acquisition of `potential` [Z, Y, X] (voxel_A Å/voxel). `progress` shows a bar
/// over tilts. Deterministic for a given seed.
Acquisition acquire(const at::Tensor& potential, double voxel_A, const AcquisitionParams& p,
                    bool progress = true);

}  // namespace unwedge
