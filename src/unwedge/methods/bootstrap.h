// The equivariant bootstrap (Tachella & Pereyra, "Equivariant bootstrapping for uncertainty
// quantification in imaging inverse problems", arXiv 2310.11838) of any point method: draws of
// what the restoration G would have given had the specimen been turned so that the wedge falls
// elsewhere,
//
//   x̂ = G(y),   x⁽ᵏ⁾ = R_k⁻¹ G(T_M(R_k x̂) + n_k),
//
// where x̂ is, as `unwedge restore` gives it by default, the average of G over the four flips
// that keep the wedge (ops/rotate.h wedge_keeping_flips; each flip undone on its output),
// with R_k an exact cube rotation that moves the missing wedge (wedge_moving_cube_rotations) and
// n_k noise of the data's level and band: T_M of white noise whose variance per coefficient is
// the input's measured power above `noise_shell` cycles/voxel (posterior_noise_variance_highfreq).
// The spread of the draws is how much G's answer depends on which band was missing and on the
// noise: large where G invents, small where the data decide. The draws are returned centred on
// the point estimate, x̂ + x⁽ᵏ⁾ − mean_j x⁽ʲ⁾ (per tile), so their mean is x̂ and their spread the
// bootstrap's; they are equally weighted. Draw k
// of every tile uses the rotation and noise of seed + k (the noise of one [1, 1, Z, Y, X] tile,
// the same for every tile of a batch), so neighbouring tiles agree where they overlap as far as
// G allows. `unwedge sample --uq bootstrap` puts any model's restoration (ddw, ei, cryogen-ot,
// n2n, ...) behind it.
#pragma once
#include <array>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "unwedge/methods/method.h"
#include "unwedge/methods/posterior.h"
#include "unwedge/methods/wedge_common.h"
#include "unwedge/ops/rotate.h"
#include "unwedge/ops/wedge.h"

namespace unwedge {

class EquivariantBootstrap : public PosteriorMethod {
 public:
  /// `point`: the method whose restore() is G (it must outlive this object). `noise_shell`:
  /// lower edge in cycles/voxel of the band the noise level is measured in (0 < shell < 0.5);
  /// `min_fraction`: the least fraction of the missing wedge a rotation must move into the
  /// measured band (as for the proxy methods' cube rotations).
  explicit EquivariantBootstrap(Method& point, double noise_shell = 0.3, double min_fraction = 0.5);

  /// opts.n draws for sub [B, 1, Z, Y, X] (normalised) observed with `wedge`; uniform weights.
  /// ValueError when no cube rotation of the tile's shape moves the wedge (tiles with no two
  /// equal edges) or opts.n < 1.
  PosteriorDraws draw(const torch::Tensor& sub, const MethodWedge& wedge,
                      const PosteriorOptions& opts) override;

  /// The rotation and the noise of draw `seed` for a tile of `shape` with measured mask m
  /// [1, 1, Z, Y, X/2+1] and noise variance per coefficient sigma2 [B] (tests).
  std::pair<CubeRotation, torch::Tensor> draw_rotation_noise(std::array<int64_t, 3> shape,
                                                             const WedgeGeometry& g,
                                                             const torch::Tensor& m,
                                                             const torch::Tensor& sigma2,
                                                             uint64_t seed);

 private:
  Method& point_;
  double noise_shell_;
  WedgeRotationSampler rotations_;  ///< its cube_choices: the wedge-moving rotations, cached
  WedgeMaskCache masks_;
};

}  // namespace unwedge
