// Posterior sampling interface shared by cryowgen-mc (CryoWGEN-I, self-normalised Monte Carlo)
// and cryowgen-langevin (CryoWGEN-II, Langevin / MALA), and the posterior arithmetic they share
// (self-normalised log weights, effective sample size, weighted moments, the wedge cost).
// `unwedge sample` (infer/sample.h) drives a PosteriorMethod tile by tile.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include <torch/torch.h>

#include "unwedge/methods/method.h"

namespace unwedge {

/// Inference-time options of the posterior methods (one source of defaults for the CLI).
struct PosteriorOptions {
  std::string uq = "model";  ///< model: the method's own posterior (cryowgen-*) | bootstrap: the
                             ///< equivariant bootstrap of its restoration (any method; bootstrap.h)
  int64_t n = 16;            ///< draws returned per tile
  uint64_t seed = 0;         ///< draws k of every tile use seed + k (tiles agree at their seams)
  double gamma = -1;         ///< cryowgen-mc temperature override (< 0: the trained value)
  int64_t candidates = 0;    ///< cryowgen-mc: candidates K drawn before weighting (0: n)
  double ess_min = 0.25;     ///< cryowgen-mc: per tile, γ is raised until ESS >= ess_min K (0: off)
  int64_t steps = 100;       ///< Langevin: steps after burn-in
  int64_t burn_in = 50;      ///< Langevin: steps discarded first
  int64_t thin = 1;          ///< Langevin: keep every thin-th state (the n draws are the last kept)
  double step_size = -1;     ///< Langevin: step η in normalised units² (< 0: the trained/auto value)
  bool mala = false;         ///< Langevin: Metropolis-adjusted (MALA) acceptance test
  std::string init = "generator";  ///< Langevin start: generator (G(y)) | mc (cryowgen-mc draws)
  std::string move = "wedge";  ///< Langevin: wedge (only the missing wedge moves; the measured band
                               ///< stays the start's) | all (every coefficient, under the likelihood)
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

/// The PosteriorMethod of `m`; throws ValueError naming the method (and the methods that draw)
/// when it is deterministic.
PosteriorMethod& method_posterior(Method& m);

/// Self-normalises log weights along dim 0: lw - logsumexp(lw, 0).
torch::Tensor posterior_normalise_log_weights(const torch::Tensor& log_w);

/// Effective sample size 1 / Σ w_k² of self-normalised log weights [n, ...] -> [...].
torch::Tensor posterior_ess(const torch::Tensor& log_w_normalised);

/// Per-tile temperatures for weights exp(−cost/γ), cost [K, B] -> γ [B] (float64): gamma_min
/// where its weights already have ESS >= ess_target, else the smallest γ > gamma_min that
/// reaches it (ESS grows with γ towards K; bisection on log γ to a relative 1e-6). A cost that
/// sums ~10⁵ measured coefficients spreads by hundreds over the candidates, so at γ = 1 one
/// candidate takes all the weight; tempering keeps ess_target of them. ess_target in [1, K].
torch::Tensor posterior_temper_to_ess(const torch::Tensor& cost, double gamma_min,
                                      double ess_target);

/// Weighted mean and standard deviation of samples [n, ...] with normalised log weights
/// [n, B] broadcast over the trailing dims of each sample.
std::pair<torch::Tensor, torch::Tensor> posterior_weighted_moments(const torch::Tensor& samples,
                                                                   const torch::Tensor& log_w);

/// Sampling-importance-resampling: n draws per batch entry picked from the K weighted samples
/// [K, B, ...] by their normalised log weights [K, B] (multinomial with replacement, from the
/// CPU generator `gen`) -> [n, B, ...] on the samples' device.
torch::Tensor posterior_resample(const torch::Tensor& samples, const torch::Tensor& log_w,
                                 int64_t n, at::Generator gen);

/// The wedge cost c(x, y) = ‖M·(F x − F y)‖² / (2 σ²): full-grid sum (orthonormal FFT, rfft
/// half-grid counted with its Hermitian multiplicity) of x, y [..., Z, Y, X] (y broadcast), m
/// broadcastable to [..., Z, Y, X/2+1], sigma2 (noise variance per measured Fourier coefficient)
/// shaped like the leading dims or a prefix of them (e.g. [B] for [B, 1, Z, Y, X]; broadcast
/// from the front) -> [...] (the leading dims).
torch::Tensor posterior_wedge_cost(const torch::Tensor& x, const torch::Tensor& y,
                                   const torch::Tensor& m, const torch::Tensor& sigma2);

/// Its negative gradient in x, the wedge log-likelihood's gradient: −T_M(x − y) / σ² (same
/// shapes as posterior_wedge_cost) -> x's shape.
torch::Tensor posterior_wedge_loglik_grad(const torch::Tensor& x, const torch::Tensor& y,
                                          const torch::Tensor& m, const torch::Tensor& sigma2);

/// Noise variance per measured Fourier coefficient [B] of sub [B, 1, Z, Y, X] with measured
/// mask m (broadcastable to [B, 1, Z, Y, X/2+1]): the mean power of sub's measured coefficients
/// above `shell` cycles/voxel (orthonormal FFT, so white noise of variance s² per voxel gives s²
/// per coefficient), where the signal of a tomogram is small next to its noise. `who` names the
/// caller in the ValueError thrown when no measured coefficient lies above the shell.
torch::Tensor posterior_noise_variance_highfreq(const torch::Tensor& sub, const torch::Tensor& m,
                                                double shell, const std::string& who);

/// Options of a Langevin run (see langevin_run).
struct LangevinOptions {
  double step = 1e-3;      ///< step size η
  int64_t steps = 100;     ///< steps after burn-in
  int64_t burn_in = 50;    ///< steps discarded first
  int64_t thin = 1;        ///< keep every thin-th state after burn-in
  int64_t keep_last = 0;   ///< keep only the last this many kept states (0: all)
  bool mala = false;       ///< Metropolis-adjusted (MALA) acceptance test
  /// When set, the noise of every proposal is projected by it (a linear projector onto the
  /// subspace the chains move in); f's gradient must then lie in the same subspace.
  std::function<torch::Tensor(const torch::Tensor&)> project;
};

/// States kept by a Langevin run.
struct LangevinResult {
  torch::Tensor kept;      ///< [K, C, ...]: K kept states (oldest first) of the C chains
  double acceptance = -1;  ///< MALA: accepted proposals / proposals (-1 without MALA)
};

/// log p(x) per chain [C] (undefined when no energy is known) and ∇ log p(x) [C, ...] for the
/// chains x [C, ...].
using LogDensityGrad = std::function<std::pair<torch::Tensor, torch::Tensor>(const torch::Tensor&)>;

/// Runs C chains (dim 0 of x0) of unadjusted Langevin, x' = x + η ∇log p(x) + √(2η) ξ, or MALA
/// (the same proposal, accepted with probability min(1, p(x') q(x | x') / (p(x) q(x' | x)))).
/// When f returns no log p, MALA uses log p(x') − log p(x) ≈ ½ (∇log p(x) + ∇log p(x'))·(x' − x)
/// (trapezoid rule along the segment; exact for Gaussian targets). Noise and acceptance draws
/// come from `gen` (a CPU generator; moved to x0's device). Throws ValueError for step <= 0,
/// steps < 1, burn_in < 0, thin < 1, keep_last < 0.
LangevinResult langevin_run(const torch::Tensor& x0, const LogDensityGrad& f,
                            const LangevinOptions& opts, at::Generator gen);

}  // namespace unwedge
