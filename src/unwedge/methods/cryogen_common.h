// CryoGenBase: the generator shared by cryogen-map and cryogen-ot (and reusable by the posterior
// methods): a residual U-Net G with x̂ = G(y), the measured-band data term taken across halves
// (G(y_a) against y_b on M, divided by the noise variance estimated from the halves), and the
// pseudo-observations ỹ = T_M(crop(R x̂)) + ñ (Haar R, ñ wedge-filtered noise of the estimated
// level) next to real observations (centre crops of y_a of the same size).
#pragma once
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "unwedge/methods/unet_method.h"
#include "unwedge/methods/wedge_common.h"

namespace unwedge {

/// Options every CryoGEN method accepts (besides the network's).
std::vector<MethodOption> cryogen_common_options();

/// One generator pass over a batch and what the priors need.
struct CryoGenStep {
  torch::Tensor x_hat;    ///< G(y_a) [B, 1, P, P, P]
  torch::Tensor data;     ///< data term (scalar)
  torch::Tensor sigma2;   ///< noise variance per sample [B]
  torch::Tensor R;        ///< rotations [B, 3, 3]
  torch::Tensor rx;       ///< crop(R x̂) [B, 1, n, n, n]
  torch::Tensor pseudo;   ///< T_M(crop(R x̂)) + ñ [B, 1, n, n, n]
  torch::Tensor pseudo_clean;  ///< T_M(crop(R x̂)) without noise
  torch::Tensor real;     ///< centre crop of y_a [B, 1, n, n, n] (detached)
  torch::Tensor m;        ///< measured masks of the crop [B, 1, n, n, n/2+1]
};

class CryoGenBase : public UNetMethod {
 public:
  explicit CryoGenBase(const nlohmann::json& resolved);
  bool needs_halves() const override { return true; }

 protected:
  /// Checks the batch and swaps the halves per sample (option swap): {y_a, y_b}.
  std::pair<torch::Tensor, torch::Tensor> halves(const Batch& batch);
  /// Real observations: centre crops of y_a [B, 1, P, P, P] of the pseudo-observations' size
  /// (detached).
  torch::Tensor real_observations(const torch::Tensor& ya) const;
  /// Checks the batch, swaps halves (option swap), runs G and builds the step.
  CryoGenStep generator_step(const Batch& batch);

  double data_weight_;
  bool swap_, crop_;
  WedgeMaskCache masks_;
};

/// Runs opt.step() with its learning rate scaled by `ratio` (the trainer sets aux optimizers'
/// rates to its own each step: this gives them a fixed ratio, TTUR), restoring it afterwards.
/// The gradients are first averaged across ranks (ctx.sync_gradients) when training is
/// distributed.
void cryogen_step_scaled(torch::optim::Optimizer& opt, double ratio, const StepContext& ctx);

}  // namespace unwedge
