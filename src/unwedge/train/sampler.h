// Random subtomograms for training: positions drawn on a jittered grid of candidate corners
// (optionally only where a specimen mask is set), a validation band along Y that training
// patches never touch, and batch assembly as tensor ops.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

namespace unwedge {

/// Options of the sampler (one source of defaults for the CLI).
struct SamplerOptions {
  int64_t patch = 64;         ///< edge of an extracted cube (its Y and X), voxels
  int64_t patch_z = 0;        ///< patch depth along Z, voxels (0: patch, a cube; 1: 2D sections)
  double val_fraction = 0.1;  ///< fraction of Y held out as the validation band (0: none)
  int64_t grid = 0;           ///< spacing of candidate corners, voxels (0: patch / 8)
};

/// One training tomogram, already normalised, float [Z, Y, X].
struct SampleSource {
  at::Tensor a;      ///< the tomogram, or the even half
  at::Tensor b;      ///< the odd half (same shape); undefined for single-tomogram methods
  at::Tensor mask;   ///< specimen mask [Z, Y, X] (nonzero = specimen); undefined: everywhere
  std::string name;  ///< for error messages
};

enum class Split { train, val };

/// Corner of a patch in tomogram `tomo` (voxels).
struct PatchPos {
  int64_t tomo = 0, z = 0, y = 0, x = 0;
};

/// Patches stacked along the batch axis: a and (for pairs) b, each [B, 1, Pz, P, P].
struct PatchBatch {
  at::Tensor a, b;
  std::vector<int64_t> tomo;  ///< the source (tomogram index) of each patch, in batch order
};

/// The validation band of a tomogram: rows [y0, y1) of Y (y0 == y1 when there is none).
struct YBand {
  int64_t y0 = 0, y1 = 0;
};

class SubtomoSampler {
 public:
  /// Validates shapes (pairs equal, patch fits the training region and the band) and builds the
  /// candidate corners. Throws ShapeError / ValueError naming the tomogram and sizes.
  SubtomoSampler(std::vector<SampleSource> sources, SamplerOptions opts);

  /// `n` random corners from `split`, using only `gen` (reproducible given its state).
  std::vector<PatchPos> draw(int64_t n, Split split, at::Generator& gen) const;
  /// Cuts the patches and stacks them: a, b as [B, 1, Pz, P, P] on the sources' device.
  PatchBatch extract(const std::vector<PatchPos>& pos) const;

  YBand val_band(int64_t tomo) const { return bands_.at(size_t(tomo)); }
  const SamplerOptions& options() const { return opts_; }
  int64_t num_sources() const { return int64_t(sources_.size()); }
  bool paired() const { return sources_.front().b.defined(); }
  /// Patch depth along Z actually used (options().patch_z, or patch when that is 0).
  int64_t patch_depth() const { return pz_; }
  /// Patches of the training region per epoch (non-overlapping count, at least 1).
  int64_t patches_per_epoch() const { return patches_per_epoch_; }

 private:
  struct Candidates {
    at::Tensor corners;  // int64 [N, 4]: tomo, z, y, x
    at::Tensor limits;   // int64 [N, 3]: largest allowed z, y, x for that row
  };
  Candidates build(Split split) const;

  std::vector<SampleSource> sources_;
  SamplerOptions opts_;
  std::vector<YBand> bands_;
  Candidates train_, val_;
  int64_t grid_ = 1, patches_per_epoch_ = 1, pz_ = 1;
};

/// Specimen mask from local variance: the local standard deviation over cubes of `cell` voxels,
/// thresholded at its `quantile` (cells below it are empty ice/vacuum). Bool [Z, Y, X].
at::Tensor auto_mask_local_variance(const at::Tensor& vol, int64_t cell, double quantile);

}  // namespace unwedge
