// ei: equivariant imaging for cryo-ET in the ICECREAM form (swing-research/icecream; the
// baseline the CryoGEN methods must beat). For both halves x̂_h = G(y_h);
//   L_obs = ‖M(y_b − x̂_a)‖² + ‖M(y_a − x̂_b)‖²
//   L_eq  = ‖M_R(R x̂_b − G(T_M(R x̂_a)))‖² + ‖M_R(R x̂_a − G(T_M(R x̂_b)))‖²
//   L     = L_obs + lambda·L_eq   (lambda = eq_weight, default 2)
// with R from the exact cube rotations that move at least min_fraction (0.5) of the missing region
// into measured territory (optionally Haar or a mix), M_R the rotated target's measured region,
// gradients through every term (no noise, no stop-gradient, as the original). The proxy core
// (cryogen_common.h) with these settings.
#include "unwedge/methods/cryogen_common.h"
#include "unwedge/methods/wedge_methods.h"

namespace unwedge {

namespace {

class Ei : public ProxyCoreBase {
 public:
  explicit Ei(const nlohmann::json& r) : ProxyCoreBase(r) {}
  std::string name() const override { return "ei"; }

  torch::Tensor loss(const Batch& batch) override {
    ProxyStep st = core_step(batch);
    stats_ = {{"obs", st.data.item<double>()}, {"eq", st.proxy.item<double>()}};
    return st.total;
  }
  /// obs (cross-half measured-band term, both directions), eq (the equivariance term).
  std::vector<std::pair<std::string, double>> step_stats() const override { return stats_; }

 private:
  std::vector<std::pair<std::string, double>> stats_;
};

}  // namespace

MethodInfo ei_method_info() {
  MethodInfo info;
  info.name = "ei";
  info.description =
      "equivariant imaging (ICECREAM form): cross-half data term + |M_R(R G(y_b) - G(T_M R G(y_a)))|^2";
  info.can.halves = true;
  info.can.single = true;
  info.one_tomogram_defaults = proxy_core_one_tomogram_defaults();
  info.few_steps = 100;
  ProxyCoreDefaults d;
  d.eq_weight = 2.0;
  d.noise = "none";
  d.symmetric = true;
  d.detach = false;
  d.rotations = "cube";
  info.options = proxy_core_options(d);
  for (auto& o : unet_method_options({{"lowpass_skip", 0.1}, {"zero_head", true}})) info.options.push_back(o);
  info.create = [](const nlohmann::json& r) -> std::unique_ptr<Method> {
    return std::make_unique<Ei>(r);
  };
  return info;
}

}  // namespace unwedge
