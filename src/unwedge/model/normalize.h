// Robust per-tomogram normalisation: statistics computed once from a central region, applied
// before training/restoration and inverted on output so results keep the input's scale.
#pragma once
#include <array>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace unwedge {

class MrcFile;

/// How the statistics are computed.
enum class NormMode {
  central,     ///< mean and standard deviation of the central region
  percentile,  ///< median and (p99 - p1) / 4.65 of the central region (a normal's std)
};

/// "central" / "percentile"; throws ValueError naming `field` for anything else.
NormMode norm_mode_parse(const std::string& text, const std::string& field = "norm");
const char* norm_mode_name(NormMode mode);

/// Scale of one tomogram: normalised = (raw - mean) / std.
struct NormStats {
  double mean = 0.0;
  double std = 1.0;
};

/// The central box [Z, Y, X] bounds (z0, z1, y0, y1, x0, x1) covering `fraction` of each axis.
std::array<int64_t, 6> norm_central_box(const std::array<int64_t, 3>& shape, double fraction);

/// Statistics of `region` (any shape, float). Throws ValueError when the spread is zero or
/// not finite (a constant or empty region cannot be standardised).
NormStats norm_stats_of(const at::Tensor& region, NormMode mode, const std::string& what);

/// Statistics of the central `fraction` of a volume [Z, Y, X] held in memory.
NormStats norm_stats_compute(const at::Tensor& vol, NormMode mode, double fraction,
                             const std::string& what);

/// One scale for a pair of halves [Z, Y, X] held in memory: the statistics of both central
/// regions together.
NormStats norm_stats_compute_pair(const at::Tensor& even, const at::Tensor& odd, NormMode mode,
                                  double fraction, const std::string& what);

/// The same statistics read from the central boxes of MRC files only (streaming): one tomogram,
/// or even and odd halves of one shape (one scale for both).
NormStats norm_stats_compute(const std::vector<const MrcFile*>& files, NormMode mode,
                             double fraction);

/// (x - mean) / std and its inverse.
at::Tensor norm_apply(const at::Tensor& x, const NormStats& s);
at::Tensor norm_invert(const at::Tensor& x, const NormStats& s);

}  // namespace unwedge
