// cryogen-map (CryoGEN-I): MAP estimate under a learned energy prior. Generator G with the
// measured-band data term across halves; a 3D convolutional discriminator D tells real
// observations (centre crops of a half) from pseudo-observations ỹ = T_M(crop(R G(y))) + ñ; G
// minimises data_weight·data + adv_weight·(−log D(ỹ)) (+ rot_weight·‖G(T_M(R x̂)) − R x̂‖², the
// rotation-consistency term). D is updated in aux_step() (on pseudo-observations from a
// gradient-free generator pass) with its own Adam (learning rate = d_lr_ratio × the trainer's,
// TTUR), the non-saturating logistic loss and an R1 penalty (r1/2)·E‖∇_y D(y)‖² on real
// observations. Adversarial training can be unstable: the running mean of D's loss is kept
// (discriminator_loss_mean) and logged at verbose level every 50 steps; the trainer's log holds
// G's loss and D's terms (step_stats).
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/methods/cryogen_common.h"
#include "unwedge/methods/wedge_methods.h"
#include "unwedge/nn/discriminator.h"

namespace unwedge {

namespace {

class CryoGenMap : public CryoGenBase {
 public:
  explicit CryoGenMap(const nlohmann::json& r)
      : CryoGenBase(r),
        adv_weight_(r.at("adv_weight").get<double>()),
        rot_weight_(r.at("rot_weight").get<double>()),
        r1_(r.at("r1").get<double>()),
        d_lr_ratio_(r.at("d_lr_ratio").get<double>()) {
    if (adv_weight_ < 0 || rot_weight_ < 0 || r1_ < 0 || !(d_lr_ratio_ > 0)) {
      throw ValueError("method cryogen-map: need adv_weight, rot_weight, r1 >= 0 and d_lr_ratio > 0; got " +
                       r.dump());
    }
    disc_ = Discriminator3d(Discriminator3dOptions()
                                .base_channels(r.at("d_channels").get<int64_t>())
                                .levels(r.at("d_levels").get<int64_t>()));
    d_opt_ = std::make_unique<torch::optim::Adam>(
        disc_->parameters(), torch::optim::AdamOptions(2e-4).betas(std::make_tuple(0.5, 0.999)));
  }

  std::string name() const override { return "cryogen-map"; }

  /// Discriminator step: real observations vs pseudo-observations of a gradient-free generator
  /// pass, R1 on real.
  void aux_step(const Batch& batch, const StepContext& ctx) override {
    CryoGenStep st;
    {
      torch::NoGradGuard no_grad;
      st = generator_step(batch);
    }
    auto real = st.real.detach().requires_grad_(true);
    auto d_real = disc_->forward(real);                  // [B]
    auto d_fake = disc_->forward(st.pseudo.detach());    // [B]
    auto l = torch::softplus(-d_real).mean() + torch::softplus(d_fake).mean();
    if (r1_ > 0) {
      auto g = torch::autograd::grad({d_real.sum()}, {real}, {}, /*retain_graph=*/true,
                                     /*create_graph=*/true)[0];
      l = l + 0.5 * r1_ * g.square().flatten(1).sum(1).mean();
    }
    d_opt_->zero_grad();
    l.backward();
    cryogen_step_scaled(*d_opt_, d_lr_ratio_, ctx);
    const double v = l.item<double>();
    d_stats_ = {{"d_loss", v},
                {"d_real", torch::sigmoid(d_real).mean().item<double>()},
                {"d_fake", torch::sigmoid(d_fake).mean().item<double>()}};
    d_loss_mean_ = d_count_ == 0 ? v : 0.98 * d_loss_mean_ + 0.02 * v;
    ++d_count_;
    if (batch.step % 50 == 0) {
      log_debug("cryogen-map step {}: discriminator loss {:.4f} (running mean {:.4f})",
                batch.step, v, d_loss_mean_);
    }
  }

  torch::Tensor loss(const Batch& batch) override {
    CryoGenStep st = generator_step(batch);
    // Generator: data term + energy −log D(ỹ) = softplus(−logit) (+ rotation consistency).
    auto energy = torch::softplus(-disc_->forward(st.pseudo)).mean();
    auto total = data_weight_ * st.data + adv_weight_ * energy;
    stats_ = d_stats_;
    stats_.emplace_back("data", st.data.item<double>());
    stats_.emplace_back("energy", energy.item<double>());
    if (rot_weight_ > 0) {
      auto again = forward_padded(st.pseudo_clean);  // G(T_M(R x̂))
      auto rot = (again - st.rx).square().mean();
      total = total + rot_weight_ * rot;
      stats_.emplace_back("rot", rot.item<double>());
    }
    return total;
  }

  /// d_loss (discriminator loss incl. R1), d_real / d_fake (mean D probability on real and
  /// pseudo-observations; 0.5 / 0.5 is the balanced game), data, energy (−log D(ỹ)), rot.
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
  double adv_weight_, rot_weight_, r1_, d_lr_ratio_;
  Discriminator3d disc_{nullptr};
  std::unique_ptr<torch::optim::Adam> d_opt_;
  std::vector<std::pair<std::string, double>> stats_, d_stats_;
  double d_loss_mean_ = 0;
  int64_t d_count_ = 0;
};

}  // namespace

MethodInfo cryogen_map_method_info() {
  MethodInfo info;
  info.name = "cryogen-map";
  info.description =
      "CryoGEN-I: generator + measured-band data term + adversarial energy prior (can be unstable)";
  info.can.halves = true;
  info.options = cryogen_common_options();
  for (MethodOption o : std::vector<MethodOption>{
           {"adv_weight", 0.1, "weight of the energy -log D(T_M(R G(y)) + noise)"},
           {"rot_weight", 0.0, "weight of the rotation consistency |G(T_M(R x)) - R x|^2 (0: off)"},
           {"r1", 1.0, "R1 gradient penalty on real observations (0: off)"},
           {"d_lr_ratio", 4.0, "discriminator learning rate / the trainer's (TTUR)"},
           {"d_channels", int64_t{8}, "discriminator: channels of the first convolution"},
           {"d_levels", int64_t{3}, "discriminator: strided levels"},
       }) {
    info.options.push_back(o);
  }
  for (auto& o : unet_method_options()) info.options.push_back(o);
  info.create = [](const nlohmann::json& r) -> std::unique_ptr<Method> {
    return std::make_unique<CryoGenMap>(r);
  };
  return info;
}

}  // namespace unwedge
