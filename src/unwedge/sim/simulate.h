// The whole simulation: specimen -> acquisition -> tomograms, presets, and the output folder.
#pragma once
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "unwedge/physics/projector.h"
#include "unwedge/sim/acquisition.h"
#include "unwedge/sim/specimen.h"

namespace unwedge {

/// Every parameter of a simulation (the single source of defaults: the "tiny" preset).
struct SimParams {
  std::string preset = "tiny";
  SpecimenParams specimen;
  AcquisitionParams acquisition;
  std::string maps_dir;                ///< folder of maps; empty = the shipped 10 Å templates
  std::vector<std::string> pdb_files;  ///< atomic models added as extra classes (gemmi)
  bool use_maps = true;                ///< use the maps folder (false: only --pdb classes)
  double wbp_lowpass = 0.0;            ///< Hamming apodisation of the WBP, cycles/pixel; 0 = none
  uint64_t seed = 0;
};

/// Names of the presets: tiny, small, standard, large.
const std::vector<std::string>& sim_preset_names();
/// Parameters of a preset (sizes, particle counts, filaments). Throws ValueError for unknown
/// names, listing the known ones.
SimParams sim_preset(const std::string& name);

/// Results in memory.
struct SimResult {
  Specimen specimen;
  Acquisition acquisition;
  at::Tensor tomo, even, odd, clean_tomo;  ///< [Z, Y, X]
  double cc_tomo_gt = 0;                   ///< Pearson CC of tomo with gt over the box
  double cc_clean_gt = 0;                  ///< same for the noise-free tomogram
  double seconds = 0;
};

/// Pearson correlation of two tensors of equal size (float64 accumulation).
double pearson_cc(const at::Tensor& a, const at::Tensor& b);

/// Runs a simulation (seeds of all parts derive from p.seed).
SimResult simulate_run(const SimParams& p, bool progress = true);

/// The files simulate_write produces, relative to the output folder.
const std::vector<std::string>& sim_output_files();

/// Writes gt.mrc, tomo.mrc, even.mrc, odd.mrc, clean_tomo.mrc, tilt_series.mrc,
/// tilt_series.tlt, particles.csv and meta.json into `dir` (created). Refuses existing files
/// (ExistsError) unless `overwrite`. `label` is the MRC label line (and goes into meta.json).
void simulate_write(const std::string& dir, const SimParams& p, const SimResult& r,
                    bool overwrite, const std::string& label);

/// Throws ExistsError if any output exists in `dir` and !overwrite (checked before running).
void simulate_check_outputs(const std::string& dir, bool overwrite);

}  // namespace unwedge
