// cryowgen-langevin (CryoWGEN-II): the posterior p(x | y) ∝ p(y | x) p(x) sampled by Langevin
// dynamics, x ← x + η (∇log p(y | x) + s(x)) + √(2η) ξ, with
//   ∇log p(y | x) = −T_M(x − y)/σ²      (the wedge likelihood; σ² as in cryowgen-mc)
//   s(x) = (D(x) − x)/σ_d²              (the prior score by Tweedie's formula)
// D is a denoiser of white Gaussian noise of level σ_d (denoiser_sigma × the clean volume's std
// by default: denoiser_noise = relative) trained on the
// stochastic generator's restorations G(y, z), rotated by Haar-random R and centre-cropped (so the
// prior is isotropic: the wedge is not baked in): min ‖D(R x̂ + σ_d ξ) − R x̂‖². Its score is that
// of the generator's distribution smoothed by N(0, σ_d²). The generator is cryowgen-mc's,
// trained by the same loss in the same step. By default (move = wedge) only the missing wedge
// moves: x ← x + η P_W s(x) + √(2η) P_W ξ with P_W = 1 − T_M, so each draw keeps the start's
// measured band (where the data decide) and explores the prior in the wedge; each kept state is
// then denoised once in the wedge (Tweedie's estimate D(x)). MALA uses the trapezoid-rule
// energy difference along each proposal (no energy is known for a Tweedie score; see
// langevin_run).
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>

#include "unwedge/core/error.h"
#include "unwedge/methods/cryowgen_common.h"
#include "unwedge/methods/wedge_common.h"
#include "unwedge/ops/rotate.h"
#include "unwedge/ops/wedge.h"

namespace unwedge {

namespace {

bool denoiser_noise_is_relative(const std::string& noise) {
  if (noise != "relative" && noise != "absolute") {
    throw ValueError("method cryowgen-langevin: denoiser_noise = '" + noise +
                     "' (relative | absolute)");
  }
  return noise == "relative";
}

class CryoWGenLangevin : public CryoWGenMc {
 public:
  explicit CryoWGenLangevin(const nlohmann::json& r)
      : CryoWGenMc(r, "cryowgen-langevin"),
        sigma_d_(r.at("denoiser_sigma").get<double>()),
        relative_(denoiser_noise_is_relative(r.at("denoiser_noise").get<std::string>())),
        d_weight_(r.at("denoiser_weight").get<double>()),
        chains_(r.at("chains").get<int64_t>()),
        step_size_(r.at("step_size").get<double>()),
        step_scale_(r.at("step_scale").get<double>()) {
    if (!(sigma_d_ > 0) || d_weight_ < 0 || chains_ < 1 || step_size_ == 0 || !(step_scale_ > 0)) {
      throw ValueError("method cryowgen-langevin: need denoiser_sigma > 0, denoiser_weight >= 0, "
                       "chains >= 1, step_size > 0 (or < 0: auto), step_scale > 0; got denoiser_sigma " +
                       r.at("denoiser_sigma").dump() + ", denoiser_weight " + r.at("denoiser_weight").dump() +
                       ", chains " + r.at("chains").dump() + ", step_size " + r.at("step_size").dump() +
                       ", step_scale " + r.at("step_scale").dump());
    }
    auto o = generator()->options();
    o.latent_channels(0);
    o.lowpass_skip(0.0);  // a denoiser of small noise starts as the identity: its score is ~0
    den_ = UNet3d(o);
  }

  std::string name() const override { return "cryowgen-langevin"; }

  /// The generator's loss plus denoiser_weight × the denoiser's (on detached, rotated G(y, z)).
  torch::Tensor loss(const Batch& batch) override {
    auto l = CryoWGenMc::loss(batch);
    const int64_t b = batch.input.size(0);
    const std::array<int64_t, 3> patch{batch.input.size(2), batch.input.size(3), batch.input.size(4)};
    torch::Tensor clean;  // [B, 1, n, n, n]
    {
      torch::NoGradGuard no_grad;
      auto p = unet3d_padded_shape(batch.input.sizes(), size_multiple());
      auto z = torch::randn(generator()->latent_shape(p), batch.input.options());
      auto x_hat = generate(batch.input, z);  // [B, 1, P, P, P]
      const int64_t n = rotation_crop_size(patch, size_multiple()[0]);
      auto R = wedge_random_rotations(b, batch.device());
      clean = center_crop3(rotate_volume(x_hat, R.to(x_hat.scalar_type()), /*order=*/1), {n, n, n});
    }
    auto noisy = clean + denoiser_level(clean) * torch::randn_like(clean);
    auto d_loss = (den_->forward(noisy) - clean).square().mean();
    stats_ = CryoWGenMc::step_stats();
    stats_.emplace_back("denoiser", d_loss.item<double>());
    return l + d_weight_ * d_loss;
  }

  /// generator's stats plus denoiser (its MSE on the last batch).
  std::vector<std::pair<std::string, double>> step_stats() const override { return stats_; }

  /// n draws: `chains` chains per tile (at most n), each keeping its last ⌈n/chains⌉ states
  /// (thinned); the draws are the most recent n of them. Uniform weights.
  PosteriorDraws draw(const torch::Tensor& sub, const MethodWedge& wedge,
                      const PosteriorOptions& opts) override {
    method_check_batch_tensor(name(), "draw input", sub);
    const int64_t n = opts.n;
    if (n < 1) throw ValueError("method " + name() + ": n = " + std::to_string(n) + " (need >= 1)");
    if (opts.move != "wedge" && opts.move != "all") {
      throw ValueError("method " + name() + ": move = '" + opts.move + "' (wedge | all)");
    }
    const int64_t c = std::min(chains_, n);
    const int64_t per = (n + c - 1) / c;
    if (opts.thin < 1 || opts.steps / opts.thin < per) {
      throw ValueError("method " + name() + ": steps / thin = " + std::to_string(opts.steps) + " / " +
                       std::to_string(opts.thin) + " keeps fewer than the " + std::to_string(per) +
                       " states per chain needed for n = " + std::to_string(n) + " with " +
                       std::to_string(c) + " chains");
    }
    torch::NoGradGuard no_grad;
    const int64_t b = sub.size(0);
    auto m = measured_mask(sub, wedge);   // [1, 1, Z, Y, X/2+1]
    auto sigma2 = noise_variance(sub, m);  // [B]
    auto rep = [&](const torch::Tensor& t) {  // [B, ...] -> [C·B, ...] (chain-major)
      auto s = t.sizes().vec();
      s.insert(s.begin(), c);
      auto e = t.unsqueeze(0).expand(s);
      s.erase(s.begin());
      s[0] = c * b;
      return e.reshape(s);
    };
    torch::Tensor x0;  // [C·B, 1, Z, Y, X]
    if (opts.init == "generator") {
      x0 = rep(generate(sub, {}));
    } else if (opts.init == "mc") {
      PosteriorOptions mo = opts;
      mo.n = c;
      mo.candidates = std::max(opts.candidates, c);
      auto d = CryoWGenMc::draw(sub, wedge, mo);  // [C, B, 1, Z, Y, X]
      if (mo.candidates == c) {  // weighted: resample the starts by weight
        d.samples = posterior_resample(d.samples, d.log_weights, c,
                                       at::detail::createCPUGenerator(opts.seed));
      }
      x0 = d.samples.reshape({c * b, 1, sub.size(2), sub.size(3), sub.size(4)});
    } else {
      throw ValueError("method " + name() + ": init = '" + opts.init + "' (generator | mc)");
    }
    auto y = rep(sub);
    auto s2 = rep(sigma2);  // [C·B]
    auto sd2 = denoiser_level(x0).square();  // [C·B, 1, 1, 1, 1]; the step follows the smallest
    const bool wedge_only = opts.move == "wedge";
    double step = opts.step_size > 0 ? opts.step_size : step_size_;
    if (!(step > 0)) {
      // Auto: step_scale / (largest curvature): the prior's ~1/σ_d², plus the likelihood's 1/σ²
      // when the measured band moves too.
      step = step_scale_ / ((wedge_only ? 0.0 : 1.0 / sigma2.min().item<double>()) +
                            1.0 / sd2.min().item<double>());
    }
    // move = wedge: the chains explore p(x_W | x_M = the start's x_M), the prior's conditional
    // in the missing wedge (where the likelihood is flat); drift and noise are projected onto
    // the wedge, so every draw keeps the start's measured band. move = all: the full posterior.
    auto in_wedge = [&](const torch::Tensor& v) { return v - wedge_apply(v, m); };
    LogDensityGrad f = [&](const torch::Tensor& x) {
      auto score = (denoise(x) - x) / sd2;
      auto g = wedge_only ? in_wedge(score) : posterior_wedge_loglik_grad(x, y, m, s2) + score;
      return std::make_pair(torch::Tensor(), g);
    };
    LangevinOptions lo;
    if (wedge_only) lo.project = in_wedge;
    lo.step = step;
    lo.steps = opts.steps;
    lo.burn_in = opts.burn_in;
    lo.thin = opts.thin;
    lo.keep_last = per;
    lo.mala = opts.mala;
    auto res = langevin_run(x0, f, lo, at::detail::createCPUGenerator(opts.seed));
    if (wedge_only) {
      // The chains sample the prior smoothed by N(0, σ_d²) (its score is the one Tweedie gives),
      // so each state carries noise of level σ_d in the wedge: each draw is the state's
      // Tweedie estimate E[x | x + σ_d ξ] = D(x) there, the last step of score-based samplers.
      for (int64_t k = 0; k < res.kept.size(0); ++k) {
        auto xk = res.kept[k];
        xk.add_(in_wedge(denoise(xk) - xk));
      }
    }
    auto kept = res.kept.reshape({per * c, b, 1, sub.size(2), sub.size(3), sub.size(4)});
    PosteriorDraws d;
    d.samples = kept.narrow(0, per * c - n, n);  // the most recent n states
    d.log_weights = torch::full({n, b}, -std::log(static_cast<double>(n)), sub.options());
    d.acceptance = res.acceptance;
    return d;
  }

  std::vector<torch::Tensor> parameters() override {
    auto p = CryoWGenMc::parameters();
    for (auto& t : den_->parameters()) p.push_back(t);
    return p;
  }
  void train(bool on) override {
    CryoWGenMc::train(on);
    den_->train(on);
  }
  void to(torch::Device device) override {
    CryoWGenMc::to(device);
    den_->to(device);
  }
  void save(torch::serialize::OutputArchive& archive) const override {
    CryoWGenMc::save(archive);
    torch::serialize::OutputArchive d;
    den_->save(d);
    archive.write("denoiser", d);
  }
  void load(torch::serialize::InputArchive& archive) override {
    CryoWGenMc::load(archive);
    torch::serialize::InputArchive d;
    if (!archive.try_read("denoiser", d)) {
      throw FormatError("method cryowgen-langevin: saved state has no denoiser ('denoiser')");
    }
    den_->load(d);
  }

  /// The denoiser's noise level σ_d for volumes v [N, 1, ...], as [N, 1, 1, 1, 1]: relative,
  /// denoiser_sigma × each volume's standard deviation (restorations' contrast varies with the
  /// data's SNR: a fixed level can swamp it); absolute, denoiser_sigma (models before 2026-12-06).
  torch::Tensor denoiser_level(const torch::Tensor& v) const {
    std::vector<int64_t> shape(static_cast<size_t>(v.dim()), 1);
    shape[0] = v.size(0);
    if (!relative_) return torch::full(shape, sigma_d_, v.options());
    return (sigma_d_ * v.flatten(1).std(1)).clamp_min(1e-6).reshape(shape);
  }

  /// D(x) for x [N, 1, Z, Y, X] (padded to the size multiple), no gradients.
  torch::Tensor denoise(const torch::Tensor& x) {
    torch::NoGradGuard no_grad;
    std::array<int64_t, 3> pad{};
    auto xp = unet3d_pad_to_multiple(x, size_multiple(), &pad);
    return unet3d_crop(den_->forward(xp), pad);
  }

 private:
  double sigma_d_;
  bool relative_;
  double d_weight_;
  int64_t chains_;
  double step_size_, step_scale_;
  UNet3d den_{nullptr};
  std::vector<std::pair<std::string, double>> stats_;
};

}  // namespace

MethodInfo cryowgen_langevin_method_info() {
  MethodInfo info;
  info.name = "cryowgen-langevin";
  info.description =
      "CryoWGEN-II: Langevin/MALA on the wedge likelihood + Tweedie prior score of a denoiser "
      "trained on G(y, z)";
  info.can.halves = true;
  info.can.posterior = true;
  info.options = cryowgen_mc_options();  // diversity_cap 0.1 as cryowgen-mc's (bench/RESULTS.md)
  for (MethodOption o : std::vector<MethodOption>{
           {"denoiser_sigma", 0.2, "Tweedie denoiser: white noise level sigma_d (see denoiser_noise)"},
           {"denoiser_noise", std::string("relative"),
            "sigma_d is: relative (denoiser_sigma x the restoration's std, per tile) | absolute "
            "(normalised units)"},
           {"denoiser_weight", 1.0, "weight of the denoiser's loss in the training loss"},
           {"chains", int64_t{4}, "Langevin chains per tile (at most n); the draws are their last states"},
           {"step_size", -1.0, "step eta (normalised units^2; < 0: auto = step_scale / (1/sigma^2 + 1/sigma_d^2), "
            "step_scale sigma_d^2 with sample --move wedge)"},
           {"step_scale", 0.1, "auto step: fraction of the inverse largest curvature"},
       }) {
    info.options.push_back(o);
  }
  info.create = [](const nlohmann::json& r) -> std::unique_ptr<Method> {
    return std::make_unique<CryoWGenLangevin>(r);
  };
  return info;
}

}  // namespace unwedge
