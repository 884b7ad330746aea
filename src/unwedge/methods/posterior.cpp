// Posterior arithmetic shared by cryowgen-mc and cryowgen-langevin (see posterior.h):
// self-normalised log weights, effective sample size, weighted moments, the wedge cost and its
// gradient, and a batched Langevin / MALA sampler for any log density with a gradient.
#include "unwedge/methods/posterior.h"

#include <cmath>

#include "unwedge/core/error.h"
#include "unwedge/methods/wedge_common.h"
#include "unwedge/ops/fourier.h"
#include "unwedge/ops/wedge.h"

namespace unwedge {

namespace {

// sigma2 (shaped like the leading dims of a [..., Z, Y, X] tensor, or a prefix of them) with
// trailing singleton dims up to `ndim`, so it broadcasts from the front.
torch::Tensor pad_trailing(const torch::Tensor& sigma2, int64_t ndim, const torch::Tensor& like) {
  auto s = sigma2.to(like.device(), like.scalar_type());
  auto sizes = s.sizes().vec();
  while (static_cast<int64_t>(sizes.size()) < ndim) sizes.push_back(1);
  return s.reshape(sizes);
}

}  // namespace

PosteriorMethod& method_posterior(Method& m) {
  auto* p = dynamic_cast<PosteriorMethod*>(&m);
  if (p == nullptr) {
    throw ValueError("method " + m.name() + " is deterministic: it draws no posterior samples "
                     "(methods that do: " + method_registry().names_with(&MethodCapabilities::posterior) +
                     "); use unwedge restore for " + m.name());
  }
  return *p;
}

torch::Tensor posterior_normalise_log_weights(const torch::Tensor& log_w) {
  if (!log_w.defined() || log_w.dim() < 1 || log_w.size(0) < 1) {
    throw ShapeError("posterior weights: need [n, ...] log weights with n >= 1, got " +
                     (log_w.defined() ? c10::str(log_w.sizes()) : std::string("undefined")));
  }
  // In double: costs of ~10⁴ lose the normalisation to float32 rounding otherwise.
  auto lw = log_w.to(torch::kDouble);
  return (lw - torch::logsumexp(lw, 0, /*keepdim=*/true)).to(log_w.scalar_type());
}

torch::Tensor posterior_ess(const torch::Tensor& log_w_normalised) {
  auto lw = posterior_normalise_log_weights(log_w_normalised);  // idempotent on normalised input
  return 1.0 / torch::exp(2.0 * lw).sum(0);
}

torch::Tensor posterior_temper_to_ess(const torch::Tensor& cost, double gamma_min,
                                      double ess_target) {
  if (cost.dim() != 2) {
    throw ShapeError("posterior_temper_to_ess: cost must be [K, B], got " + c10::str(cost.sizes()));
  }
  const int64_t k = cost.size(0), b = cost.size(1);
  if (!(gamma_min > 0)) {
    throw ValueError("posterior_temper_to_ess: gamma " + std::to_string(gamma_min) + " (need > 0)");
  }
  if (!(ess_target >= 1 && ess_target <= double(k))) {
    throw ValueError("posterior_temper_to_ess: target ESS " + std::to_string(ess_target) +
                     " is not in [1, " + std::to_string(k) + "]");
  }
  auto c = cost.detach().to(torch::kCPU, torch::kDouble);
  auto ess = [&](int64_t j, double g) {
    return posterior_ess(-c.select(1, j) / g).item<double>();
  };
  auto out = torch::empty({b}, torch::kDouble);
  for (int64_t j = 0; j < b; ++j) {
    double lo = gamma_min;
    if (ess(j, lo) >= ess_target) {
      out[j] = lo;
      continue;
    }
    // ESS -> K as γ grows: double until it is enough (a target of K itself may only be reached
    // by rounding: stop before γ overflows, where the weights are uniform to double precision).
    double hi = 2 * lo;
    while (ess(j, hi) < ess_target && std::isfinite(4 * hi)) {
      lo = hi;
      hi *= 2;
    }
    for (int i = 0; i < 100 && hi / lo > 1 + 1e-6; ++i) {
      const double mid = std::sqrt(lo * hi);
      (ess(j, mid) >= ess_target ? hi : lo) = mid;
    }
    out[j] = hi;
  }
  return out;
}

std::pair<torch::Tensor, torch::Tensor> posterior_weighted_moments(const torch::Tensor& samples,
                                                                   const torch::Tensor& log_w) {
  if (!samples.defined() || samples.dim() < log_w.dim() ||
      samples.sizes().slice(0, log_w.dim()) != log_w.sizes()) {
    throw ShapeError("posterior moments: samples " +
                     (samples.defined() ? c10::str(samples.sizes()) : std::string("undefined")) +
                     " do not start with the weights' shape " + c10::str(log_w.sizes()));
  }
  auto w = torch::exp(posterior_normalise_log_weights(log_w)).to(samples.scalar_type());
  auto shape = w.sizes().vec();
  shape.resize(static_cast<size_t>(samples.dim()), 1);
  w = w.reshape(shape);                                      // [n, B, 1, ...]
  auto mean = (w * samples).sum(0);                          // [B, ...]
  auto var = (w * (samples - mean.unsqueeze(0)).square()).sum(0);
  return {mean, var.clamp_min(0).sqrt()};
}

torch::Tensor posterior_resample(const torch::Tensor& samples, const torch::Tensor& log_w,
                                 int64_t n, at::Generator gen) {
  if (!samples.defined() || log_w.dim() != 2 || samples.dim() < 2 ||
      samples.sizes().slice(0, 2) != log_w.sizes() || n < 1) {
    throw ShapeError("posterior resampling: need samples [K, B, ...], log weights [K, B] and "
                     "n >= 1; got samples " +
                     (samples.defined() ? c10::str(samples.sizes()) : std::string("undefined")) +
                     ", log weights " + c10::str(log_w.sizes()) + ", n " + std::to_string(n));
  }
  auto idx = torch::multinomial(torch::exp(log_w).t().to(torch::kCPU, torch::kDouble), n,
                                /*replacement=*/true, gen);  // [B, n]
  std::vector<torch::Tensor> picked;
  for (int64_t j = 0; j < samples.size(1); ++j) {
    picked.push_back(samples.select(1, j).index_select(0, idx[j].to(samples.device())));  // [n, ...]
  }
  return torch::stack(picked, 1);  // [n, B, ...]
}

torch::Tensor posterior_wedge_cost(const torch::Tensor& x, const torch::Tensor& y,
                                   const torch::Tensor& m, const torch::Tensor& sigma2) {
  if (x.dim() < 3) throw ShapeError("wedge cost: x must be [..., Z, Y, X], got " + c10::str(x.sizes()));
  const int64_t nx = x.size(-1);
  auto spec = fourier_rfft3(x - y);  // [..., Z, Y, X/2+1]
  auto p = spec.abs().square() * m.to(x.device(), x.scalar_type()) *
           fourier_half_multiplicity(nx, x.device()).to(x.scalar_type());
  auto sum = p.flatten(-3).sum(-1);  // [...]
  return sum / (2.0 * pad_trailing(sigma2, sum.dim(), sum));
}

torch::Tensor posterior_noise_variance_highfreq(const torch::Tensor& sub, const torch::Tensor& m,
                                                double shell, const std::string& who) {
  torch::NoGradGuard no_grad;
  const int64_t z = sub.size(2), y = sub.size(3), x = sub.size(4);
  auto k = fourier_freq_rfft({z, y, x}, torch::TensorOptions().dtype(torch::kFloat).device(sub.device()));
  auto above = ((k.kz.square() + k.ky.square() + k.kx.square()).sqrt() > shell).to(torch::kFloat);
  auto w = (m.to(torch::kFloat) * above * fourier_half_multiplicity(x, sub.device()))
               .expand({1, 1, z, y, x / 2 + 1});  // [1, 1, Z, Y, X/2+1]
  const double count = w.sum().item<double>();
  if (count < 1) {
    throw ValueError(who + ": no measured frequency above " + std::to_string(shell) +
                     " cycles/voxel in a " + c10::str(sub.sizes()) + " input");
  }
  auto p = fourier_rfft3(sub.to(torch::kFloat)).abs().square();
  return ((p * w).flatten(1).sum(1) / count).clamp_min(1e-8).to(sub.scalar_type());  // [B]
}

torch::Tensor posterior_wedge_loglik_grad(const torch::Tensor& x, const torch::Tensor& y,
                                          const torch::Tensor& m, const torch::Tensor& sigma2) {
  return -wedge_apply(x - y, m) / pad_trailing(sigma2, x.dim(), x);
}

LangevinResult langevin_run(const torch::Tensor& x0, const LogDensityGrad& f,
                            const LangevinOptions& o, at::Generator gen) {
  if (!(o.step > 0) || o.steps < 1 || o.burn_in < 0 || o.thin < 1 || o.keep_last < 0) {
    throw ValueError("Langevin: need step > 0, steps >= 1, burn_in >= 0, thin >= 1, keep_last >= 0; "
                     "got step " + std::to_string(o.step) + ", steps " + std::to_string(o.steps) +
                     ", burn_in " + std::to_string(o.burn_in) + ", thin " + std::to_string(o.thin) +
                     ", keep_last " + std::to_string(o.keep_last));
  }
  if (o.steps < o.thin) {
    throw ValueError("Langevin: steps " + std::to_string(o.steps) + " < thin " +
                     std::to_string(o.thin) + ": no state would be kept");
  }
  torch::NoGradGuard no_grad;
  const int64_t c = x0.size(0);
  const double noise_scale = std::sqrt(2.0 * o.step);
  const auto cpu = torch::TensorOptions().dtype(x0.scalar_type()).device(torch::kCPU);
  auto per_chain = [&](const torch::Tensor& v) { return v.flatten(1).sum(1); };  // [C]
  auto chain_view = [&](const torch::Tensor& v) {                              // [C, 1, ...]
    auto s = std::vector<int64_t>(static_cast<size_t>(x0.dim()), 1);
    s[0] = c;
    return v.reshape(s);
  };
  torch::Tensor x = x0.clone();
  auto [logp, g] = f(x);
  int64_t accepted = 0, proposed = 0;
  std::vector<torch::Tensor> kept;
  const int64_t total = o.burn_in + o.steps;
  for (int64_t t = 0; t < total; ++t) {
    auto xi = torch::randn(x.sizes(), gen, cpu).to(x.device());
    if (o.project) xi = o.project(xi);
    auto xp = x + o.step * g + noise_scale * xi;  // proposal [C, ...]
    if (!o.mala) {
      x = xp;
      std::tie(logp, g) = f(x);
    } else {
      auto [logp_p, g_p] = f(xp);
      // log q(a | b) = −‖a − b − η g(b)‖² / (4η)
      auto log_q_fwd = -per_chain((xp - x - o.step * g).square()) / (4.0 * o.step);
      auto log_q_bwd = -per_chain((x - xp - o.step * g_p).square()) / (4.0 * o.step);
      torch::Tensor dlogp = (logp.defined() && logp_p.defined())
                                ? logp_p - logp
                                : 0.5 * per_chain((g + g_p) * (xp - x));
      auto log_alpha = dlogp + log_q_bwd - log_q_fwd;  // [C]
      auto u = torch::rand({c}, gen, cpu).to(x.device());
      auto acc = torch::log(u.clamp_min(1e-30)) < log_alpha.to(u.scalar_type());  // [C] bool
      accepted += acc.sum().item<int64_t>();
      proposed += c;
      auto accv = chain_view(acc);
      x = torch::where(accv, xp, x);
      g = torch::where(accv, g_p, g);
      if (logp.defined() && logp_p.defined()) logp = torch::where(acc, logp_p, logp);
    }
    const int64_t after = t - o.burn_in;  // 0-based step after burn-in
    if (after >= 0 && (after + 1) % o.thin == 0) {
      kept.push_back(x.clone());
      if (o.keep_last > 0 && static_cast<int64_t>(kept.size()) > o.keep_last) kept.erase(kept.begin());
    }
  }
  LangevinResult r;
  r.kept = torch::stack(kept);  // [K, C, ...]
  if (o.mala) r.acceptance = static_cast<double>(accepted) / static_cast<double>(proposed);
  return r;
}

}  // namespace unwedge
