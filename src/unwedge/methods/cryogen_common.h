// The proxy core shared by ei (the equivariant-imaging baseline) and the CryoGEN methods
// (cryogen-ot, cryogen-map, and through cryogen-ot the posterior methods), DESIGN §4:
//
//   x̂_a = G(y_a), x̂_b = G(y_b)                                        (halves a, b)
//   data  = ‖M·(y_b − x̂_a)‖² (+ ‖M·(y_a − x̂_b)‖²)                    cross-half, measured band
//   proxy = ‖W·(R x̂_b − G(T_M(R x̂_a) + ñ))‖² (+ a↔b)                  the T_M∘R target
//   W     = M_R·M + wedge_weight·M_R·(1−M)                             where the target has data
//   loss  = data_weight·data + eq_weight·proxy (+ ddw_weight·ddw)
//
// R is a rotation per sample from the method's rotation set (wedge_common.h: exact cube rotations
// that move the wedge, Haar, or a mix), M_R the rotated target's measured region, ñ noise like
// the data's (the half difference (y_a − y_b)/√2 of another sample of the batch: the data's own
// level and spectrum; or wedge-filtered white noise of the same variance; or none). With
// `detach` the targets R x̂_b and the pseudo-inputs T_M(R x̂_a) carry no gradient (G learns from
// its own outputs as a teacher; the data term trains x̂ directly). With symmetric = false only the
// a → b direction is taken (halves swapped at random per sample), saving two of four passes.
// The optional DDW term is DeepDeWedge's: input T_M(R y_a), target R y_b on the same bands.
// Norms are band means of orthonormal spectra (wedge_common.h: fourier_band_mean_sq).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "unwedge/methods/unet_method.h"
#include "unwedge/methods/wedge_common.h"

namespace unwedge {

/// Defaults of the core's options (one method's choice; ei and cryogen differ). The CryoGEN
/// defaults: ICECREAM's form (both directions, gradients through every term) plus noise of the
/// data's level on pseudo-observations, which ei leaves out (bench/RESULTS.md, issue 14).
struct ProxyCoreDefaults {
  double data_weight = 1.0;
  double eq_weight = 2.0;
  double wedge_weight = 1.0;
  std::string noise = "halves";
  bool symmetric = true;
  bool detach = false;
  std::string rotations = "cube";
  double ddw_weight = 0.0;
  std::string target = "restoration";
};

/// The core's method options with these defaults (data_weight, eq_weight, wedge_weight, proxy_noise,
/// symmetric, detach, rotations, min_fraction, crop, ddw_weight).
std::vector<MethodOption> proxy_core_options(const ProxyCoreDefaults& d);

/// The core's options for one tomogram (no halves, so no noise to put on pseudo-observations):
/// input = one, the network starts as the identity (no low-pass skip), the proxy's target is the
/// data (IsoNet's target, with the restoration as the pseudo-input's source) and its pseudo-input
/// carries no gradient, one direction per step (the two would be the same term). bench/RESULTS.md,
/// "cryogen-ot on one tomogram".
nlohmann::json proxy_core_one_tomogram_defaults();

/// What one core pass computed, for the priors built on it (direction a → b).
struct ProxyStep {
  torch::Tensor total;   ///< data_weight·data + eq_weight·proxy (+ ddw_weight·ddw), scalar
  torch::Tensor data;    ///< cross-half measured-band term
  torch::Tensor proxy;   ///< the T_M∘R term
  torch::Tensor ddw;     ///< DDW term (undefined when off)
  torch::Tensor y_a, y_b;        ///< the halves after the random swap [B, 1, P, P, P]
  torch::Tensor x_hat;   ///< G(y_a) with its graph [B, 1, P, P, P]
  torch::Tensor m_patch; ///< measured masks of the patch [B, 1, P, P, P/2+1]
  WedgeRotationDraw rot; ///< the rotations
  int64_t crop = 0;      ///< edge of the rotated volumes (P when not cropped)
  torch::Tensor m;       ///< measured masks of the crop [B, 1, n, n, n/2+1]
  torch::Tensor m_rot;   ///< rotated targets' measured masks [B, 1, n, n, n/2+1]
  torch::Tensor noise;   ///< ñ added to the proxy term's input [B, 1, n, n, n] (zeros for "none")
  torch::Tensor prior_noise;  ///< ñ of the priors' pseudo-observations: `noise`, or the data's
                              ///< (halves) when proxy_noise = none (real observations are noisy)
  torch::Tensor sigma2;  ///< noise variance per voxel of one half [B]
  torch::Tensor m_pad, m_rot_pad;  ///< with pad: M and M_R of the crop zero-padded to twice its
                                   ///< edge [B, 1, 2n, 2n, n+1] (undefined otherwise)
  torch::Tensor m_patch_pad;       ///< with pad: M of the patch zero-padded to twice its edge
};

/// How the core's terms filter and score (options pad and loss_window). The default is the
/// plain core: band filters on the crop's own (periodic) grid, the whole crop scored.
struct ProxyBands {
  bool pad = false;     ///< filters on the grid of twice the crop's edge (band_filter_padded)
  double window = 1.0;  ///< score the central fraction of each edge
};

/// T_M(v) for v [B, 1, n, n, n]: with m [B, 1, n, n, n/2+1] on v's own grid, or with
/// bands.pad and m of the doubled grid [B, 1, 2n, 2n, n+1] by band_filter_padded.
torch::Tensor proxy_measure(const torch::Tensor& v, const torch::Tensor& m, const ProxyBands& bands);

/// Mean square of F⁻¹[w·F e] for e [B, 1, n, n, n] over the central bands.window of each edge,
/// w on e's grid or (bands.pad) on the doubled one; the plain core's value is Parseval's
/// fourier_band_mean_sq.
torch::Tensor proxy_band_mean_sq(const torch::Tensor& e, const torch::Tensor& w, const ProxyBands& bands);

class ProxyCoreBase : public UNetMethod {
 public:
  explicit ProxyCoreBase(const nlohmann::json& resolved);
  /// False for a model trained on one tomogram (option input = one).
  bool needs_halves() const override { return !one_tomogram_; }

 protected:
  /// Checks the batch, swaps halves (one-directional mode), runs the core (both directions in
  /// symmetric mode: `total` then holds both).
  ProxyStep core_step(const Batch& batch);
  /// What core_step draws before any network pass: checked and swapped halves, noise variance,
  /// masks, rotations, crop and ñ (x_hat and the terms stay undefined).
  ProxyStep proxy_setup(const Batch& batch);
  /// Pseudo-observation T_M(R v) + prior_noise of a [B, 1, P, P, P] volume with the step's rotations.
  torch::Tensor pseudo_observation(const torch::Tensor& v, const ProxyStep& st) const;
  /// Real observations to compare pseudo-observations with: centre crops of y_a [B,1,n,n,n].
  torch::Tensor real_observation(const ProxyStep& st) const;
  /// Edge of the rotated volumes for a patch: the rotation crop (haar/mix with crop) or the
  /// patch's edge (cube rotations; ShapeError unless the patch is cubic).
  int64_t proxy_crop(std::array<int64_t, 3> patch) const;

  double data_weight_, eq_weight_, wedge_weight_, ddw_weight_;
  std::string noise_, target_;
  bool one_tomogram_;  ///< input = one: the batch holds one tomogram, used as both halves
  bool symmetric_, detach_, crop_;
  ProxyBands bands_;  ///< options pad and loss_window
  WedgeRotationSampler rotations_;
  WedgeMaskCache masks_;

 private:
  // One direction: data and proxy terms for G(y_a) against y_b.
  void direction(const torch::Tensor& ya, const torch::Tensor& yb, const torch::Tensor& xa,
                 const torch::Tensor& xb, ProxyStep& st, bool first);
};

/// The proxy term of one direction: band mean of W·(R x_b − g(T_M(R x_a) + noise)) with
/// W = M_R·M + √wedge_weight·M_R·(1−M) (so wedge_weight weighs the squared error), R and the
/// crop from `rot`/`crop`, m / m_rot the crop's measured and rotated-measured masks
/// [B, 1, n, n, n/2+1] (of the doubled grid with bands.pad), noise [B, 1, n, n, n] (or
/// undefined). g is the network (with padding).
torch::Tensor wedge_proxy_term(const std::function<torch::Tensor(const torch::Tensor&)>& g,
                               const torch::Tensor& x_a, const torch::Tensor& x_b,
                               const WedgeRotationDraw& rot, int64_t crop, const torch::Tensor& m,
                               const torch::Tensor& m_rot, const torch::Tensor& noise,
                               double wedge_weight, const ProxyBands& bands = {});

/// F⁻¹[w · F v] on the grid of twice v's edge: v [B, 1, n, n, n] zero-padded at the far end of
/// each axis, filtered by w (broadcastable to [B, 1, 2n, 2n, n+1], the padded grid's rfft
/// half-grid) and cropped back to v's box. The filter acts as a linear convolution instead of
/// wrapping one face of the box onto the other (ICECREAM's wedge_double_size).
torch::Tensor band_filter_padded(const torch::Tensor& v, const torch::Tensor& w);

/// x̂' = M·sg(x̂) + (1−M)·x̂: the same values as x̂, with gradients only through the missing-wedge
/// component (the prior may act only where the data are silent). x [B,1,Z,Y,X], m its masks.
torch::Tensor wedge_component_only(const torch::Tensor& x, const torch::Tensor& m);

/// The weight that gives a prior a `share` of the gradient on `param` (the generator's last
/// layer): share/(1−share) · ‖∇ core‖ / ‖∇ prior‖, detached, clamped to [0, max_weight]. Both
/// losses must still have their graphs (retain_graph is used). 0 when the prior has no gradient;
/// nullopt when gradients are off (validation).
std::optional<double> adaptive_prior_weight(const torch::Tensor& core, const torch::Tensor& prior,
                                            const torch::Tensor& param, double share,
                                            double max_weight);

/// The options of a prior on the wedge component (prior_share, prior_start, prior_every,
/// max_prior_weight); `what` names the prior in their help.
std::vector<MethodOption> wedge_prior_options(const std::string& what);

/// The adaptive weight of a prior on the wedge component, from wedge_prior_options: on from
/// step prior_start (when prior_share > 0), carrying prior_share of the gradient on G's last
/// layer. Lazily: with prior_every = k it is computed on every k-th step only, its weight times
/// k (the same gradient on average, a k-th of the prior's cost; lazy regularisation as in
/// StyleGAN2's R1). Validation (no gradients) uses the weight of the last training step.
class WedgePriorWeight {
 public:
  /// Reads and checks the options (ValueError naming `method`).
  WedgePriorWeight(const nlohmann::json& resolved, const std::string& method);
  /// True when the prior (and its auxiliary network's training) is computed at `step`: from
  /// prior_start on, every prior_every-th step (every step when gradients are off: validation).
  /// False when prior_share is 0 (the prior is off).
  bool enabled() const { return share_ > 0; }
  /// prior_start.
  int64_t start() const { return start_; }
  bool on(int64_t step) const {
    return share_ > 0 && step >= start_ &&
           ((step - start_) % every_ == 0 || !torch::GradMode::is_enabled());
  }
  /// The weight of `prior` next to `core` on `param` this step: prior_every × adaptive_prior_weight.
  double weigh(const torch::Tensor& core, const torch::Tensor& prior, const torch::Tensor& param);

 private:
  double share_, max_weight_;
  int64_t start_, every_;
  double last_ = 0.0;  ///< the weight of the last training step
};

/// Runs opt.step() with its learning rate scaled by `ratio` (the trainer sets aux optimizers'
/// rates to its own each step: this gives them a fixed ratio, TTUR), restoring it afterwards.
/// The gradients are first averaged across ranks (ctx.sync_gradients) when training is
/// distributed.
void cryogen_step_scaled(torch::optim::Optimizer& opt, double ratio, const StepContext& ctx);

}  // namespace unwedge
