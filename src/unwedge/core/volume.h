// Volume: a float32 tensor [Z, Y, X] with the header facts that must travel with it.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace unwedge {

/// Header facts a volume keeps from input to output (MRC2014 semantics).
struct VolumeMeta {
  std::array<double, 3> voxel_size{1.0, 1.0, 1.0};  ///< Å per voxel along x, y, z
  std::array<double, 3> origin{0.0, 0.0, 0.0};      ///< Å, MRC2014 origin field (x, y, z)
  std::array<int32_t, 3> nstart{0, 0, 0};           ///< voxels, nxstart/nystart/nzstart
  std::vector<std::string> labels;                  ///< up to 10 lines of 80 characters
  std::string exttyp;                               ///< 4-character extended header type
  std::vector<char> ext_header;                     ///< raw extended header bytes (nsymbt)
  int32_t ispg = 0;                                 ///< space group (0 or 1 for volumes)
};

/// A volume and its metadata. `data` is float32, contiguous, shaped [Z, Y, X].
struct Volume {
  at::Tensor data;
  VolumeMeta meta;

  int64_t nz() const { return data.size(0); }
  int64_t ny() const { return data.size(1); }
  int64_t nx() const { return data.size(2); }
};

}  // namespace unwedge
