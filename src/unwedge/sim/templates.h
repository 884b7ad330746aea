// Particle templates: density maps (a folder of MRC maps, the shipped 10 Å set, or atomic models
// turned into a potential) resampled to the simulation's voxel size and put on one scale.
#pragma once
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace unwedge {

/// One particle class.
struct SimTemplate {
  std::string name;        ///< class name (file stem)
  at::Tensor density;      ///< float32 [z, y, x] at the target voxel size, >= 0
  double radius_vox = 0;   ///< bounding-sphere radius about the box centre, voxels
};

/// The folder of the 26 shipped 10 Å maps: $UNWEDGE_DATA/templates_10A when that variable is
/// set, else data/templates_10A of the source tree this library was built from.
std::string sim_default_maps_dir();

/// Resamples a map from `from_A` to `to_A` Å/voxel about its centre (trilinear, with a Gaussian
/// anti-alias blur when coarsening). Values stay densities (per volume), so the integral
/// sum * voxel^3 is kept. Output size ceil(n * from_A / to_A) per axis.
at::Tensor template_resample(const at::Tensor& map, double from_A, double to_A);

/// Puts a map on the simulator's scale: negatives clipped, then scaled so that the mean over
/// the voxels holding 90 % of its mass is 1 (protein interior = 1, excess over ice).
at::Tensor template_normalise(const at::Tensor& map);

/// Bounding-sphere radius (voxels, about the box centre) of the voxels above `threshold`
/// (on the normalised scale, protein interior = 1), plus one voxel of margin.
double template_radius(const at::Tensor& map, double threshold = 0.15);

/// Loads every *.mrc / *.map in `dir` (sorted by name), resampled to `voxel_A` and normalised.
/// Throws IoError when the folder is missing or holds no maps.
std::vector<SimTemplate> templates_load_dir(const std::string& dir, double voxel_A);

/// True when the library was built with gemmi (atomic models can be read).
bool templates_have_gemmi();

/// Potential of an atomic model (PDB format, read with gemmi) at `voxel_A`: atoms splatted
/// on the grid per element and convolved with their electron scattering factors (International
/// Tables C 4.3.2.2, 5 Gaussians, plus each element's mean B factor), then normalised as
/// template_normalise does. Throws ValueError when built without gemmi.
SimTemplate template_from_atoms(const std::string& path, double voxel_A);

}  // namespace unwedge
