// cryogen-map (CryoGEN-I): MAP estimate under a learned energy prior. The proxy core
// (cryogen_common.h: the T_M∘R target on G's own outputs with noise of the data's level, and the
// cross-half measured-band data term) plus an adversarial energy:
//
//   ỹ'     = T_M(R x̂') + ñ,  x̂' = M·sg(x̂) + (1−M)·x̂     gradient only through the wedge component
//   D      : real observations (centre crops of a half) vs ỹ' (non-saturating logistic loss,
//            R1 penalty (r1/2)·E‖∇_y D(y)‖² on real observations, its own Adam at d_lr_ratio ×
//            the trainer's rate: TTUR), stepped in aux_step() on pseudo-observations of a
//            gradient-free generator pass
//   energy = −log D(ỹ') = softplus(−logit)
//   loss   = core + w·energy,  w = share/(1−share)·‖∇core‖/‖∇energy‖ on G's last layer
//            (adaptive: the prior carries `prior_share` of that gradient, so D cannot take over),
//            from step `prior_start` on.
//
// Adversarial training can be unstable: d_real / d_fake (mean D probabilities) are logged every
// step; 0.5 / 0.5 is the balanced game.
#include "unwedge/core/error.h"
#include "unwedge/methods/cryogen_common.h"
#include "unwedge/methods/wedge_methods.h"
#include "unwedge/nn/discriminator.h"

namespace unwedge {

namespace {

class CryoGenMap : public ProxyCoreBase {
 public:
  explicit CryoGenMap(const nlohmann::json& r)
      : ProxyCoreBase(r),
        prior_(r, "cryogen-map"),
        r1_(r.at("r1").get<double>()),
        d_lr_ratio_(r.at("d_lr_ratio").get<double>()) {
    if (r1_ < 0 || !(d_lr_ratio_ > 0)) {
      throw ValueError("method cryogen-map: need r1 >= 0 and d_lr_ratio > 0; got " + r.dump());
    }
    disc_ = Discriminator3d(Discriminator3dOptions()
                                .base_channels(r.at("d_channels").get<int64_t>())
                                .levels(r.at("d_levels").get<int64_t>()));
    d_opt_ = std::make_unique<torch::optim::Adam>(
        disc_->parameters(), torch::optim::AdamOptions(2e-4).betas(std::make_tuple(0.5, 0.999)));
  }

  std::string name() const override { return "cryogen-map"; }

  /// Discriminator step (from prior_start on): real observations vs pseudo-observations of a
  /// gradient-free generator pass, R1 on the real ones.
  void aux_step(const Batch& batch, const StepContext& ctx) override {
    if (!prior_.on(batch.step)) return;
    ProxyStep st = proxy_setup(batch);
    torch::Tensor pseudo;
    {
      torch::NoGradGuard no_grad;
      pseudo = pseudo_observation(forward_padded(st.y_a), st);  // [B, 1, n, n, n]
    }
    auto r = real_observation(st).requires_grad_(true);
    auto d_real = disc_->forward(r);       // [B] logits
    auto d_fake = disc_->forward(pseudo);  // [B]
    auto l = torch::softplus(-d_real).mean() + torch::softplus(d_fake).mean();
    if (r1_ > 0) {
      auto g = torch::autograd::grad({d_real.sum()}, {r}, {}, /*retain_graph=*/true,
                                     /*create_graph=*/true)[0];
      l = l + 0.5 * r1_ * g.square().flatten(1).sum(1).mean();
    }
    d_opt_->zero_grad();
    l.backward();
    cryogen_step_scaled(*d_opt_, d_lr_ratio_, ctx);
    d_opt_->zero_grad();
    d_stats_ = {{"d_loss", l.item<double>()},
                {"d_real", torch::sigmoid(d_real).mean().item<double>()},
                {"d_fake", torch::sigmoid(d_fake).mean().item<double>()}};
  }

  torch::Tensor loss(const Batch& batch) override {
    ProxyStep st = core_step(batch);
    stats_ = {{"data", st.data.item<double>()}, {"proxy", st.proxy.item<double>()}};
    if (st.ddw.defined()) stats_.emplace_back("ddw", st.ddw.item<double>());
    if (!prior_.on(batch.step)) return st.total;
    auto pseudo = pseudo_observation(wedge_component_only(st.x_hat, st.m_patch), st);
    auto energy = torch::softplus(-disc_->forward(pseudo)).mean();  // −log D(ỹ')
    const double w = prior_.weigh(st.total, energy, net_->named_parameters()["head.weight"]);
    for (const auto& kv : d_stats_) stats_.push_back(kv);
    stats_.emplace_back("energy", energy.item<double>());
    stats_.emplace_back("energy_weight", w);
    return st.total + w * energy;
  }

  /// data, proxy, d_loss (discriminator loss incl. R1), d_real / d_fake (mean D probability on
  /// real and pseudo-observations), energy (−log D(ỹ')), energy_weight (adaptive weight).
  std::vector<std::pair<std::string, double>> step_stats() const override { return stats_; }
  std::vector<torch::optim::Optimizer*> aux_optimizers() override { return {d_opt_.get()}; }
  void train(bool on) override {
    net_->train(on);
    disc_->train(on);
  }
  void to(torch::Device device) override {
    net_->to(device);
    disc_->to(device);
  }
  void save(torch::serialize::OutputArchive& archive) const override {
    UNetMethod::save(archive);
    torch::serialize::OutputArchive d, o;
    disc_->save(d);
    d_opt_->save(o);
    archive.write("discriminator", d);
    archive.write("discriminator_opt", o);
  }
  void load(torch::serialize::InputArchive& archive) override {
    UNetMethod::load(archive);
    torch::serialize::InputArchive d, o;
    if (!archive.try_read("discriminator", d) || !archive.try_read("discriminator_opt", o)) {
      throw FormatError("method cryogen-map: saved state has no discriminator");
    }
    disc_->load(d);
    d_opt_->load(o);
  }

 private:
  WedgePriorWeight prior_;
  double r1_, d_lr_ratio_;
  Discriminator3d disc_{nullptr};
  std::unique_ptr<torch::optim::Adam> d_opt_;
  std::vector<std::pair<std::string, double>> stats_, d_stats_;
};

}  // namespace

MethodInfo cryogen_map_method_info() {
  MethodInfo info;
  info.name = "cryogen-map";
  info.description =
      "CryoGEN-I: T_M o R target on its own outputs + cross-half data term + adversarial energy prior on the wedge";
  info.can.halves = true;
  // The core one-directional and detached (G as its own teacher): in ICECREAM's form cryogen-map
  // gained overall CC but made a spurious Z profile (bench/RESULTS.md, issue 14, second round).
  ProxyCoreDefaults core;
  core.symmetric = false;
  core.detach = true;
  info.options = proxy_core_options(core);
  for (auto& o : wedge_prior_options("the energy -log D")) info.options.push_back(o);
  for (MethodOption o : std::vector<MethodOption>{
           {"r1", 1.0, "R1 gradient penalty on real observations (0: off)"},
           {"d_lr_ratio", 1.0, "discriminator learning rate / the trainer's (TTUR)"},
           {"d_channels", int64_t{8}, "discriminator: channels of the first convolution"},
           {"d_levels", int64_t{3}, "discriminator: strided levels"},
       }) {
    info.options.push_back(o);
  }
  for (auto& o : unet_method_options({{"lowpass_skip", 0.1}, {"zero_head", true}})) info.options.push_back(o);
  info.create = [](const nlohmann::json& r) -> std::unique_ptr<Method> {
    return std::make_unique<CryoGenMap>(r);
  };
  return info;
}

}  // namespace unwedge
