// CryoWGen: the stochastic generator shared by cryowgen-mc (CryoWGEN-I) and cryowgen-langevin
// (CryoWGEN-II). The generator is a cryogen-ot generator (same data term across halves, same
// pseudo-observations, same OT matching; Sinkhorn by default) whose U-Net takes latent noise
// z ~ N(0, I) at its bottleneck (`latent_channels`): G(y, z). Training draws a fresh z per
// sample, so the data term pins the measured band (variance from z costs data term there) while
// the entropic OT term keeps the samples spread where the data cannot decide (the wedge).
//
// Draws (PosteriorMethod::draw) for cryowgen-mc: K candidates x_k = G(y, z_k), z_k from a
// generator seeded with seed + k (the same for every tile), costs
// c_k = ‖M·(F x_k − F y)‖² / (2σ²) and self-normalised log weights −c_k/γ. σ² (noise variance
// per measured Fourier coefficient) comes from the input's measured band above `noise_shell`
// cycles/voxel (noise = highfreq) or from the halves seen in training (noise = halves).
//
// Diversity: a generator with latent noise tends to ignore z (mode collapse; at the U-Net's
// default initialisation z changes the output by ~1e-4). With diversity_weight > 0 each step
// also runs G(y_a, z1), G(y_a, z2) and adds −diversity_weight · min(ρ, diversity_cap), where
// ρ = ‖(1−M)·F(x1 − x2)‖ / (‖(1−M)·F x1‖² + ‖(1−M)·F x2‖²)^½ per sample (0: identical wedge
// content, 1: uncorrelated; norms, not squares, so the gradient does not vanish at collapse). It acts only on the missing band (the data term holds the measured
// band); the cap stops it from trading the wedge's agreement with y for spread. A heuristic
// (mode-seeking regularisation), not part of the entropic-OT objective; it costs one more
// generator pass of twice the batch.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "unwedge/methods/posterior.h"
#include "unwedge/methods/unet_method.h"
#include "unwedge/ops/wedge.h"

namespace unwedge {

/// Options of cryowgen-mc: cryogen-ot's (ot defaulting to sinkhorn), latent_channels, gamma,
/// noise, noise_shell, and the U-Net's.
std::vector<MethodOption> cryowgen_mc_options();

/// Registry entries (methods/registry.cpp).
MethodInfo cryowgen_mc_method_info();
MethodInfo cryowgen_langevin_method_info();

class CryoWGenMc : public Method, public PosteriorMethod {
 public:
  /// `method`: the registered name used in error messages (the Langevin method derives).
  explicit CryoWGenMc(const nlohmann::json& resolved, const std::string& method = "cryowgen-mc");

  std::string name() const override { return "cryowgen-mc"; }
  bool needs_halves() const override { return true; }
  bool stochastic() const override { return true; }

  /// Records the training geometry and the halves' noise level, then the cryogen-ot
  /// autoencoder step.
  void aux_step(const Batch& batch, const StepContext& ctx) override;
  /// The cryogen-ot loss of the stochastic generator (fresh z per sample).
  torch::Tensor loss(const Batch& batch) override;
  /// G(y, z = 0): one deterministic restoration (the generator's central draw).
  torch::Tensor restore(const torch::Tensor& sub) override;
  PosteriorDraws draw(const torch::Tensor& sub, const MethodWedge& wedge,
                      const PosteriorOptions& opts) override;

  std::vector<torch::Tensor> parameters() override { return inner_->parameters(); }
  torch::nn::Module* main_network() override { return inner_->main_network(); }
  /// The generator's (data, ot, autoencoder) plus diversity (the wedge diversity ratio).
  std::vector<std::pair<std::string, double>> step_stats() const override { return mc_stats_; }
  std::vector<torch::optim::Optimizer*> aux_optimizers() override {
    return inner_->aux_optimizers();
  }
  void train(bool on) override { inner_->train(on); }
  void to(torch::Device device) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
  nlohmann::json options_json() const override { return options_; }
  std::array<int64_t, 3> receptive_field() const override { return inner_->receptive_field(); }
  std::array<int64_t, 3> size_multiple() const override { return inner_->size_multiple(); }

  /// The generator's U-Net (tests, benchmarks).
  UNet3d& generator() { return gen_->net(); }
  /// Temperature γ stored with the model.
  double gamma() const { return gamma_; }
  /// Noise variance per measured Fourier coefficient [B] for sub [B, 1, Z, Y, X] and its
  /// measured mask m (per options: high-frequency shell of sub, or the halves' value).
  torch::Tensor noise_variance(const torch::Tensor& sub, const torch::Tensor& m) const;
  /// G(sub, z) for sub [B, 1, Z, Y, X] (padded to the size multiple) and latent noise z of the
  /// padded shape (undefined: z = 0). No gradients.
  torch::Tensor generate(const torch::Tensor& sub, const torch::Tensor& z);
  /// Latent noise for sub's padded shape with batch 1 from a CPU generator seeded with `seed`,
  /// expanded to sub's batch (every tile gets the same z for the same seed).
  torch::Tensor latent(const torch::Tensor& sub, uint64_t seed) const;

 protected:
  /// Measured masks [B or 1, 1, Z, Y, X/2+1] of `wedge` for sub's shape on sub's device.
  torch::Tensor measured_mask(const torch::Tensor& sub, const MethodWedge& wedge);

  nlohmann::json options_;
  std::unique_ptr<Method> inner_;  ///< the cryogen-ot generator with latent noise
  UNetMethod* gen_ = nullptr;      ///< inner_ as a UNetMethod
  double gamma_;
  std::string noise_;
  double noise_shell_;
  double div_weight_, div_cap_;
  std::vector<std::pair<std::string, double>> mc_stats_;
  torch::Tensor halves_sigma2_;  ///< [1]: running mean of the halves' noise per coefficient
  torch::Tensor halves_count_;   ///< [1]: batches in that mean
  torch::Tensor trained_wedge_;  ///< [3]: tilt_min, tilt_max, flip of the last training batch
  WedgeMaskCache masks_;
};

}  // namespace unwedge
