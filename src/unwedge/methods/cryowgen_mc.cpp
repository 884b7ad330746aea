// cryowgen-mc (CryoWGEN-I, EVIA Monte Carlo): the stochastic generator of cryowgen_common.h,
// trained as cryogen-ot with latent noise, and self-normalised importance weighting of its
// candidates by the Boltzmann factor exp(−c(x, y)/γ) of the wedge cost.
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "unwedge/core/error.h"
#include "unwedge/methods/augment.h"
#include "unwedge/methods/cryowgen_common.h"
#include "unwedge/methods/wedge_common.h"
#include "unwedge/methods/wedge_methods.h"

namespace unwedge {

std::vector<MethodOption> cryowgen_mc_options() {
  std::vector<MethodOption> opts = cryogen_ot_method_info().options;
  for (auto& o : opts) {
    if (o.key == "ot") o.default_value = "sinkhorn";
    if (o.key == "prior_start") o.default_value = int64_t{0};  // the OT prior from the first step
    if (o.key == "zero_head") o.default_value = false;  // the latent noise must reach the output
  }
  for (MethodOption o : std::vector<MethodOption>{
           {"latent_channels", int64_t{4}, "latent noise channels z ~ N(0, I) at the U-Net bottleneck (>= 1)"},
           {"gamma", 1.0, "temperature: log weights -c(x, y)/gamma (stored; unwedge sample --gamma overrides)"},
           {"noise", "highfreq",
            "noise variance for the cost: highfreq (input's measured band above noise_shell) | halves "
            "(per-half value seen in training)"},
           {"noise_shell", 0.3, "highfreq: lower edge of the shell, cycles/voxel (0 < shell < 0.5)"},
           {"diversity_weight", 1.0,
            "weight of the diversity term -min(rho, cap), rho = |(1-M)F(x1-x2)| / sqrt(|(1-M)F x1|^2 + |(1-M)F x2|^2) (0: off)"},
           {"diversity_cap", 0.1,
            "cap of rho (0 = identical draws in the wedge, 1 = uncorrelated); 0.1: draws near G(y, 0), "
            "whose weighted mean then beats the point (bench/RESULTS.md)"},
       }) {
    opts.push_back(o);
  }
  return opts;
}

CryoWGenMc::CryoWGenMc(const nlohmann::json& r, const std::string& method)
    : options_(r),
      gamma_(r.at("gamma").get<double>()),
      noise_(r.at("noise").get<std::string>()),
      noise_shell_(r.at("noise_shell").get<double>()),
      div_weight_(r.at("diversity_weight").get<double>()),
      div_cap_(r.at("diversity_cap").get<double>()) {
  if (r.at("latent_channels").get<int64_t>() < 1) {
    throw ValueError("method " + method + ": latent_channels = " + r.at("latent_channels").dump() +
                     " (need >= 1: the generator must be stochastic)");
  }
  if (!(gamma_ > 0)) throw ValueError("method " + method + ": gamma = " + r.at("gamma").dump() + " (need > 0)");
  if (noise_ != "highfreq" && noise_ != "halves") {
    throw ValueError("method " + method + ": noise = '" + noise_ + "' (highfreq | halves)");
  }
  if (!(noise_shell_ > 0 && noise_shell_ < 0.5)) {
    throw ValueError("method " + method + ": noise_shell = " + r.at("noise_shell").dump() +
                     " (need 0 < shell < 0.5 cycles/voxel)");
  }
  if (div_weight_ < 0 || !(div_cap_ > 0)) {
    throw ValueError("method " + method + ": need diversity_weight >= 0 and diversity_cap > 0; got " +
                     r.at("diversity_weight").dump() + ", " + r.at("diversity_cap").dump());
  }
  inner_ = cryogen_ot_method_info().create(r);
  gen_ = dynamic_cast<UNetMethod*>(inner_.get());
  if (!gen_) throw ValueError("method " + method + ": the cryogen-ot generator is not a U-Net method");
  halves_sigma2_ = torch::zeros({1});
  halves_count_ = torch::zeros({1});
  trained_wedge_ = torch::tensor({-60.0f, 60.0f, 0.0f});
}

namespace {

void check_halves(const std::string& name, const Batch& batch) {
  method_check_batch_tensor(name, "input (even half)", batch.input);
  method_check_batch_tensor(name, "target (odd half)", batch.target);
  if (batch.input.sizes() != batch.target.sizes()) {
    throw ShapeError("method " + name + ": halves differ in shape: " +
                     c10::str(batch.input.sizes()) + " vs " + c10::str(batch.target.sizes()));
  }
}

}  // namespace

void CryoWGenMc::aux_step(const Batch& batch, const StepContext& ctx) {
  check_halves(name(), batch);
  const int64_t b = batch.input.size(0);
  auto geoms = wedge_batch_geometries(batch, b);
  if (!batch.wedge.empty()) {
    const auto& w = batch.wedge[0];
    trained_wedge_ = torch::tensor({static_cast<float>(w.tilt_min_deg),
                                    static_cast<float>(w.tilt_max_deg), w.flip_sign ? 1.0f : 0.0f});
  }
  {
    // Noise variance per measured coefficient of one half: |F(even − odd)|² / 2 over M.
    torch::NoGradGuard no_grad;
    const std::array<int64_t, 3> shape{batch.input.size(2), batch.input.size(3), batch.input.size(4)};
    auto m = wedge_batch_masks(shape, geoms, masks_, batch.device());  // [B, 1, Z, Y, X/2+1]
    auto w = m * fourier_half_multiplicity(shape[2], batch.device());
    auto p = fourier_rfft3(batch.input - batch.target).abs().square();
    const double s2 = ((p * w).sum() / w.sum().clamp_min(1) / 2.0).item<double>();
    const double n = halves_count_.item<double>();
    halves_sigma2_ = (halves_sigma2_ * n + s2) / (n + 1);
    halves_count_ = halves_count_ + 1;
  }
  inner_->aux_step(batch, ctx);
}

torch::Tensor CryoWGenMc::loss(const Batch& batch) {
  check_halves(name(), batch);
  const int64_t b = batch.input.size(0);
  auto geoms = wedge_batch_geometries(batch, b);
  auto l = inner_->loss(batch);
  mc_stats_ = inner_->step_stats();
  if (div_weight_ > 0) {
    // Two draws of the same inputs in one pass: [2B, 1, P, P, P].
    auto& net = gen_->net();
    std::array<int64_t, 3> pad{};
    auto xp = unet3d_pad_to_multiple(torch::cat({batch.input, batch.input}), size_multiple(), &pad);
    auto x = unet3d_crop(net->forward(xp, torch::randn(net->latent_shape(xp.sizes()), xp.options())), pad);
    const std::array<int64_t, 3> shape{batch.input.size(2), batch.input.size(3), batch.input.size(4)};
    auto miss = 1.0 - wedge_batch_masks(shape, geoms, masks_, batch.device());  // [B, 1, Z, Y, X/2+1]
    auto w = miss * fourier_half_multiplicity(shape[2], batch.device());
    auto f1 = fourier_rfft3(x.narrow(0, 0, b));
    auto f2 = fourier_rfft3(x.narrow(0, b, b));
    auto diff = ((f1 - f2).abs().square() * w).flatten(1).sum(1);                          // [B]
    auto total = ((f1.abs().square() + f2.abs().square()) * w).flatten(1).sum(1).clamp_min(1e-12);
    auto rho = (diff / total + 1e-12).sqrt();  // [B]; a norm ratio: nonzero gradient at collapse
    l = l - div_weight_ * rho.clamp_max(div_cap_).mean();
    mc_stats_.emplace_back("diversity", rho.mean().item<double>());
  }
  return l;
}

torch::Tensor CryoWGenMc::generate(const torch::Tensor& sub, const torch::Tensor& z) {
  torch::NoGradGuard no_grad;
  auto& net = gen_->net();
  std::array<int64_t, 3> pad{};
  auto xp = unet3d_pad_to_multiple(sub, size_multiple(), &pad);  // [B, 1, Z', Y', X']
  auto zz = z.defined() ? z : torch::zeros(net->latent_shape(xp.sizes()), xp.options());
  return unet3d_crop(net->forward(xp, zz), pad);  // [B, 1, Z, Y, X]
}

torch::Tensor CryoWGenMc::latent(const torch::Tensor& sub, uint64_t seed) const {
  auto p = unet3d_padded_shape(sub.sizes(), size_multiple());  // [B, 1, Z', Y', X']
  auto shape = gen_->net()->latent_shape({1, 1, p[2], p[3], p[4]});  // [1, L, z, y, x]
  auto gen = at::detail::createCPUGenerator(seed);
  auto z = torch::randn(shape, gen, torch::TensorOptions().dtype(sub.scalar_type()));
  shape[0] = sub.size(0);
  return z.to(sub.device()).expand(shape).contiguous();  // [B, L, z, y, x]
}

torch::Tensor CryoWGenMc::restore(const torch::Tensor& sub) {
  method_check_batch_tensor(name(), "restore input", sub);
  return generate(sub, {});
}

torch::Tensor CryoWGenMc::measured_mask(const torch::Tensor& sub, const MethodWedge& wedge) {
  const std::array<int64_t, 3> shape{sub.size(2), sub.size(3), sub.size(4)};
  auto g = method_wedge_geometry(wedge);
  return masks_.mask(shape, g, sub.device()).view({1, 1, shape[0], shape[1], shape[2] / 2 + 1});
}

torch::Tensor CryoWGenMc::noise_variance(const torch::Tensor& sub, const torch::Tensor& m) const {
  const int64_t b = sub.size(0);
  if (noise_ == "halves") {
    if (halves_count_.item<double>() < 1) {
      throw ValueError("method " + name() + ": noise = halves, but the model has seen no training batch");
    }
    return halves_sigma2_.to(sub.device(), sub.scalar_type()).expand({b}).clone();
  }
  return posterior_noise_variance_highfreq(sub, m, noise_shell_,
                                           "method " + name() + ": noise_shell");
}

PosteriorDraws CryoWGenMc::draw(const torch::Tensor& sub, const MethodWedge& wedge,
                                const PosteriorOptions& opts) {
  method_check_batch_tensor(name(), "draw input", sub);
  const int64_t n = opts.n, k = opts.candidates > 0 ? opts.candidates : opts.n;
  if (n < 1 || k < n) {
    throw ValueError("method " + name() + ": need n >= 1 and candidates >= n (0: n); got n " +
                     std::to_string(n) + ", candidates " + std::to_string(opts.candidates));
  }
  if (opts.gamma == 0) throw ValueError("method " + name() + ": gamma = 0 (need > 0, or < 0 for the trained value)");
  const double gamma = opts.gamma > 0 ? opts.gamma : gamma_;
  torch::NoGradGuard no_grad;
  const int64_t b = sub.size(0);
  auto m = measured_mask(sub, wedge);                  // [1, 1, Z, Y, X/2+1]
  auto sigma2 = noise_variance(sub, m).view({b, 1});   // [B, 1]
  std::vector<torch::Tensor> cand, cost;
  for (int64_t i = 0; i < k; ++i) {
    auto x = generate(sub, latent(sub, opts.seed + static_cast<uint64_t>(i)));  // [B, 1, Z, Y, X]
    cost.push_back(posterior_wedge_cost(x, sub, m, sigma2).view({b}));         // [B]
    cand.push_back(x);
  }
  auto costs = torch::stack(cost);  // [K, B]
  if (opts.ess_min < 0 || opts.ess_min > 1) {
    throw ValueError("method " + name() + ": ess_min " + std::to_string(opts.ess_min) +
                     " is not in [0, 1]");
  }
  // Tempering: each tile's γ is raised from the trained (or given) value until ess_min K of its
  // candidates carry the weight.
  auto g = opts.ess_min > 0
               ? posterior_temper_to_ess(costs, gamma, std::max(1.0, opts.ess_min * double(k)))
               : torch::full({b}, gamma, torch::kDouble);
  auto log_w = posterior_normalise_log_weights(  // in float64: γ may sit far below the costs
                   -costs.to(torch::kDouble) / g.to(costs.device()).view({1, b}))
                   .to(costs.scalar_type());  // [K, B]
  auto all = torch::stack(cand);                                             // [K, B, 1, Z, Y, X]
  PosteriorDraws d;
  if (k == n) {
    d.samples = all;
    d.log_weights = log_w;
    return d;
  }
  // Sampling-importance-resampling: n of the K candidates per tile, drawn by weight.
  d.samples = posterior_resample(all, log_w, n, at::detail::createCPUGenerator(opts.seed));
  d.log_weights = torch::full({n, b}, -std::log(static_cast<double>(n)), log_w.options());
  return d;
}

void CryoWGenMc::to(torch::Device device) { inner_->to(device); }

void CryoWGenMc::save(torch::serialize::OutputArchive& archive) const {
  inner_->save(archive);
  archive.write("cryowgen_halves_sigma2", halves_sigma2_, /*is_buffer=*/true);
  archive.write("cryowgen_halves_count", halves_count_, /*is_buffer=*/true);
  archive.write("cryowgen_trained_wedge", trained_wedge_, /*is_buffer=*/true);
}

void CryoWGenMc::load(torch::serialize::InputArchive& archive) {
  inner_->load(archive);
  torch::Tensor s, c, w;
  if (!archive.try_read("cryowgen_halves_sigma2", s) || !archive.try_read("cryowgen_halves_count", c) ||
      !archive.try_read("cryowgen_trained_wedge", w)) {
    throw FormatError("method " + name() + ": saved state has no noise level or training geometry "
                      "('cryowgen_halves_sigma2', 'cryowgen_halves_count', 'cryowgen_trained_wedge')");
  }
  halves_sigma2_ = s.to(torch::kCPU);
  halves_count_ = c.to(torch::kCPU);
  trained_wedge_ = w.to(torch::kCPU);
}

MethodInfo cryowgen_mc_method_info() {
  MethodInfo info;
  info.name = "cryowgen-mc";
  info.description =
      "CryoWGEN-I: stochastic generator G(y, z) trained with entropic OT; draws weighted by exp(-c(x, y)/gamma)";
  info.can.halves = true;
  info.can.posterior = true;
  info.options = cryowgen_mc_options();
  info.create = [](const nlohmann::json& r) -> std::unique_ptr<Method> {
    return std::make_unique<CryoWGenMc>(r);
  };
  return info;
}

}  // namespace unwedge
