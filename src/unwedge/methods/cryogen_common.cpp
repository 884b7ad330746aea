// CryoGenBase (see cryogen_common.h).
#include "unwedge/methods/cryogen_common.h"

#include "unwedge/core/error.h"

namespace unwedge {

std::vector<MethodOption> cryogen_common_options() {
  return {
      {"data_weight", 1.0, "weight of the measured-band data term (across halves, / noise variance)"},
      {"swap", true, "swap the halves per sample at random"},
      {"crop", true,
       "centre-crop rotated volumes to the largest size-multiple <= patch/sqrt(2) (no empty corners)"},
  };
}

CryoGenBase::CryoGenBase(const nlohmann::json& r)
    : UNetMethod(r),
      data_weight_(r.at("data_weight").get<double>()),
      swap_(r.at("swap").get<bool>()),
      crop_(r.at("crop").get<bool>()) {
  if (data_weight_ < 0) {
    throw ValueError("cryogen: data_weight = " + std::to_string(data_weight_) + " (need >= 0)");
  }
}

std::pair<torch::Tensor, torch::Tensor> CryoGenBase::halves(const Batch& batch) {
  method_check_batch_tensor(name(), "input (even half)", batch.input);
  method_check_batch_tensor(name(), "target (odd half)", batch.target);
  if (batch.input.sizes() != batch.target.sizes()) {
    throw ShapeError("method " + name() + ": halves differ in shape: " +
                     c10::str(batch.input.sizes()) + " vs " + c10::str(batch.target.sizes()));
  }
  const int64_t b = batch.input.size(0);
  torch::Tensor ya = batch.input, yb = batch.target;  // [B, 1, P, P, P]
  if (swap_) {
    auto s = torch::randint(2, {b, 1, 1, 1, 1}, torch::kLong).to(batch.device()).to(torch::kBool);
    auto t = torch::where(s, yb, ya);
    yb = torch::where(s, ya, yb);
    ya = t;
  }
  return {ya, yb};
}

torch::Tensor CryoGenBase::real_observations(const torch::Tensor& ya) const {
  const std::array<int64_t, 3> patch{ya.size(2), ya.size(3), ya.size(4)};
  const int64_t n = crop_ ? rotation_crop_size(patch, size_multiple()[0]) : 0;
  return center_crop3(ya, crop_ ? std::array<int64_t, 3>{n, n, n} : patch).detach();
}

CryoGenStep CryoGenBase::generator_step(const Batch& batch) {
  auto [ya, yb] = halves(batch);  // [B, 1, P, P, P]
  const auto dev = batch.device();
  const int64_t b = batch.input.size(0);
  const std::array<int64_t, 3> patch{batch.input.size(2), batch.input.size(3), batch.input.size(4)};
  auto geoms = wedge_batch_geometries(batch, b);
  CryoGenStep st;
  st.sigma2 = noise_variance_from_halves(ya, yb);                // [B]
  auto m_patch = wedge_batch_masks(patch, geoms, masks_, dev);   // [B, 1, P, P, P/2+1]
  st.x_hat = forward_padded(ya);
  st.data = wedge_data_term(st.x_hat, yb, m_patch, st.sigma2);
  const int64_t n = crop_ ? rotation_crop_size(patch, size_multiple()[0]) : 0;
  const std::array<int64_t, 3> shape = crop_ ? std::array<int64_t, 3>{n, n, n} : patch;
  st.m = wedge_batch_masks(shape, geoms, masks_, dev);
  st.R = wedge_random_rotations(b, dev);
  std::tie(st.rx, st.pseudo_clean) = wedge_proxy_degrade(st.x_hat, st.R, n, st.m);
  st.pseudo = st.pseudo_clean + wedge_matched_noise(st.pseudo_clean, st.m, st.sigma2);
  st.real = real_observations(ya);
  return st;
}

void cryogen_step_scaled(torch::optim::Optimizer& opt, double ratio, const StepContext& ctx) {
  ctx.sync_gradients(optimizer_parameters(opt));  // average across ranks when distributed
  std::vector<double> saved;
  for (auto& g : opt.param_groups()) {
    saved.push_back(g.options().get_lr());
    g.options().set_lr(saved.back() * ratio);
  }
  opt.step();
  size_t i = 0;
  for (auto& g : opt.param_groups()) g.options().set_lr(saved[i++]);
}

}  // namespace unwedge
