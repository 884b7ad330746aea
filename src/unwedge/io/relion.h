// RELION 5 tomogram projects: the tomograms table (`tomograms.star`, block data_global, one row
// per tomogram) read into the files unwedge trains and restores on, and written back with the
// restored tomograms so RELION 5 imports it.
//
// Columns read (RELION 5 labels):
//   rlnTomoName                           the tomogram's name (required, unique)
//   rlnTomoReconstructedTomogramHalf1/2   half tomograms (methods that train on halves)
//   rlnTomoReconstructedTomogram          the full tomogram (single-tomogram methods)
//   rlnTomoTiltSeriesStarFile             the tilt series' STAR: its angles give the tilt range
//                                         (rlnTomoYTilt after alignment, else
//                                         rlnTomoNominalStageTiltAngle)
//   rlnTomoTiltSeriesPixelSize, rlnTomoTomogramBinning   voxel size = pixel size x binning
// Every other column is kept as it is and written back.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "unwedge/io/star.h"

namespace unwedge {

/// One row of the tomograms table, paths resolved (see relion_path_resolve).
struct RelionTomogram {
  std::string name;              ///< rlnTomoName
  std::string tomogram;          ///< rlnTomoReconstructedTomogram (empty: no column)
  std::string half1, half2;      ///< rlnTomoReconstructedTomogramHalf1 / Half2 (empty: none)
  std::string tilt_series_star;  ///< rlnTomoTiltSeriesStarFile (empty: none)
  std::vector<double> angles;    ///< tilt angles from the tilt-series STAR, degrees (empty: none)
  double voxel_size = 0;         ///< tilt-series pixel size x binning, Å (0: not given)
};

struct RelionTomograms {
  std::string path;                     ///< the STAR file read
  StarFile star;                        ///< as read (every block and column)
  std::vector<RelionTomogram> tomograms;  ///< rows of data_global, in order
};

/// The labels of the tomograms table unwedge reads (to catch misspelt ones).
const std::vector<std::string>& relion_tomogram_labels();

/// A path from a STAR file: absolute as it is; relative ones against the current folder
/// (RELION's project folder, where RELION runs), or, when no file is there, against the STAR
/// file's folder.
std::string relion_path_resolve(const std::string& path, const std::string& star_path);

/// Reads a RELION 5 tomograms table and each tomogram's tilt-series STAR (where the column is
/// there). FormatError, one line naming the file (and the column or row), for: no data_global
/// loop, no rlnTomoName column, a label that is a misspelling of one unwedge reads (e.g.
/// rlnTomoReconstructedTomogramHalf_1), duplicate names, a tilt-series STAR without an angle
/// column, values that are not numbers where numbers belong.
RelionTomograms relion_tomograms_read(const std::string& path);

/// The column `label` of every tomogram, or a FormatError naming the file and the missing
/// column (`what` says what it is needed for).
std::vector<std::string> relion_column(const RelionTomograms& t, const std::string& label,
                                       const std::string& what);

/// The restored tomograms, one per row of `in` in order.
struct RelionOutput {
  std::string tomogram;               ///< the restored tomogram's path, as it goes in the STAR
  std::array<int64_t, 3> size_xyz{};  ///< its size in voxels (X, Y, Z)
  double voxel_size = 0;              ///< its voxel size, Å
};

/// The row of a written tomogram: its path, and its size and voxel size from its MRC header.
/// Throws IoError/FormatError naming the file when it cannot be read.
RelionOutput relion_output_from_mrc(const std::string& path);

/// The table of `in` with the restored tomograms in rlnTomoReconstructedTomogramDenoised (the
/// column RELION 5's denoising job writes and its picker and particle extraction read), the
/// sizes in rlnTomoSizeX/Y/Z, and rlnTomoTomogramBinning / rlnTomoTiltSeriesPixelSize filled in
/// where missing. Every other column and block of `in` stays as it was, so the global table
/// keeps rlnVoltage, rlnSphericalAberration, rlnAmplitudeContrast, ... as RELION 5 needs them.
StarFile relion_tomograms_with_outputs(const RelionTomograms& in,
                                       const std::vector<RelionOutput>& out);

}  // namespace unwedge
