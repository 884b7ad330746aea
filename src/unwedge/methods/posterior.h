// Posterior sampling interface shared by cryowgen-mc (CryoWGEN-I, self-normalised Monte Carlo)
// and cryowgen-langevin (CryoWGEN-II, Langevin / MALA), and the posterior arithmetic they share
// (self-normalised log weights, effective sample size, weighted moments, the wedge cost).
// `unwedge sample` (infer/sample.h) drives a PosteriorMethod tile by tile.
#pragma once
#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "unwedge/methods/method.h"

namespace unwedge {

/// Inference-time options of the posterior methods (one source of defaults for the CLI).
struct PosteriorOptions {
  int64_t n = 16;            ///< draws returned per tile
  uint64_t seed = 0;         ///< draws k of every tile use seed + k (tiles agree at their seams)
  double gamma = -1;         ///< cryowgen-mc temperature override (< 0: the trained value)
  int64_t candidates = 0;    ///< cryowgen-mc: candidates K drawn before weighting (0: n)
  int64_t steps = 100;       ///< Langevin: steps after burn-in
  int64_t burn_in = 50;      ///< Langevin: steps discarded first
  int64_t thin = 1;          ///< Langevin: keep every thin-th state (the n draws are the last kept)
  double step_size = -1;     ///< Langevin: step η in normalised units² (< 0: the trained/auto value)
  bool mala = false;         ///< Langevin: Metropolis-adjusted (MALA) acceptance test
  std::string init = "generator";  ///< Langevin start: generator (G(y)) | mc (cryowgen-mc draws)
};

/// Weighted draws for one batch of tiles.
struct PosteriorDraws {
  torch::Tensor samples;      ///< [n, B, 1, Z, Y, X], normalised units
  torch::Tensor log_weights;  ///< [n, B], self-normalised (logsumexp over n = 0); uniform = -log n
  double acceptance = -1;     ///< MALA acceptance rate over the run (-1: not applicable)
};

/// A method that draws from p(x | y). Implemented by cryowgen-mc and cryowgen-langevin; a
/// Method that is a PosteriorMethod is found with dynamic_cast.
class PosteriorMethod {
 public:
  virtual ~PosteriorMethod() = default;
  /// Draws for sub [B, 1, Z, Y, X] (normalised) observed with `wedge`.
  virtual PosteriorDraws draw(const torch::Tensor& sub, const MethodWedge& wedge,
                              const PosteriorOptions& opts) = 0;
};

/// Self-normalises log weights along dim 0: lw - logsumexp(lw, 0).
torch::Tensor posterior_normalise_log_weights(const torch::Tensor& log_w);

/// Effective sample size 1 / Σ w_k² of self-normalised log weights [n, ...] -> [...].
torch::Tensor posterior_ess(const torch::Tensor& log_w_normalised);

/// Weighted mean and standard deviation of samples [n, ...] with normalised log weights
/// [n, B] broadcast over the trailing dims of each sample.
std::pair<torch::Tensor, torch::Tensor> posterior_weighted_moments(const torch::Tensor& samples,
                                                                   const torch::Tensor& log_w);

}  // namespace unwedge
