// The simulated specimen (ground truth): particles from templates at random positions and
// Haar-uniform orientations without overlap, lipid vesicles, filaments, gold beads and an
// amorphous-ice texture inside a slab with vacuum above and below.
// Values are excess scattering potential over vitreous ice, in units where a protein's
// interior is 1 (templates are normalised so; see templates.h). The ice's own constant level
// is not in the volume: the image formation accounts for it (sim/acquisition.h).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "unwedge/sim/templates.h"

namespace unwedge {

/// Everything that defines a specimen. Lengths in Å unless the name says voxels.
struct SpecimenParams {
  std::array<int64_t, 3> shape{32, 64, 64};  ///< [Z, Y, X] voxels
  double voxel_A = 10.0;                     ///< Å per voxel
  double thickness_A = 250.0;                ///< ice slab thickness (centred in Z)
  int n_particles = 20;                      ///< particles to place (fewer if they do not fit)
  int n_vesicles = 1;                        ///< lipid vesicles
  double vesicle_radius_min_A = 100.0;       ///< vesicle radius range (to the bilayer middle)
  double vesicle_radius_max_A = 300.0;
  int n_microtubules = 0;                    ///< hollow tubes, 250 Å outer diameter
  int n_actin = 1;                           ///< thin filaments, 70 Å diameter
  int n_gold = 2;                            ///< gold beads
  double gold_radius_A = 50.0;               ///< bead radius
  double gold_density = 8.0;                 ///< bead potential relative to protein
  double ice_noise = 0.05;                   ///< std of the amorphous-ice texture (protein = 1)
  double ice_noise_scale_A = 20.0;           ///< correlation length of that texture
  uint64_t seed = 0;
};

/// Lipid bilayer constants (Å and relative density): two head-group leaflets of density
/// `head` at R ± separation/2 with Gaussian width `head_sigma`, and a hydrocarbon core of
/// density -`tail` (slightly lighter than ice) at R with width `tail_sigma`.
struct BilayerProfile {
  double separation_A = 40.0;
  double head = 1.2;
  double head_sigma_A = 6.0;
  double tail = 0.2;
  double tail_sigma_A = 8.0;
};

/// Radial bilayer density at distance r (Å) from the centre of a vesicle of radius R (Å).
at::Tensor bilayer_profile(const at::Tensor& r_A, double radius_A, const BilayerProfile& p);

/// One placed particle. Centre in voxels (x, y, z: MRC/array indices of [Z, Y, X]); the
/// template was rotated by R (out(p) = in(R^T p) about its centre, ops/rotate.h convention).
struct SimParticle {
  std::string class_name;
  int class_id = 0;
  std::array<double, 3> centre_xyz{0, 0, 0};  ///< voxels
  std::array<double, 4> quat_wxyz{1, 0, 0, 0};  ///< unit quaternion of R, w >= 0
  double radius_vox = 0;                      ///< bounding sphere, voxels
};

/// A specimen and what was placed in it.
struct Specimen {
  at::Tensor potential;                 ///< float32 [Z, Y, X]
  std::vector<SimParticle> particles;
  std::vector<std::string> class_names; ///< class_id -> name
  int n_vesicles = 0, n_microtubules = 0, n_actin = 0, n_gold = 0;
};

/// Builds the specimen. Throws ValueError for impossible parameters (slab thicker than the box
/// is clipped to the box with a warning; no templates with n_particles > 0).
Specimen specimen_make(const SpecimenParams& p, const std::vector<SimTemplate>& templates);
/// Throws ValueError naming the value when the box, voxel size or thickness cannot be simulated
/// (specimen_make checks this first).
void specimen_check(const SpecimenParams& p);

/// The quaternion (w >= 0) of a rotation matrix R [3,3].
std::array<double, 4> rotation_to_quaternion(const at::Tensor& R);

}  // namespace unwedge
