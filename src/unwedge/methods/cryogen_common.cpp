// The proxy core of ei and the CryoGEN methods (see cryogen_common.h).
#include "unwedge/methods/cryogen_common.h"

#include <cmath>

#include "unwedge/core/error.h"
#include "unwedge/ops/fourier.h"

namespace unwedge {

namespace {

// Mean square of e [B, 1, n, n, n] over the central `keep` fraction of each edge (all of it
// when keep >= 1).
torch::Tensor central_mean_sq(const torch::Tensor& e, double keep) {
  if (keep >= 1.0) return e.square().mean();
  torch::Tensor c = e;
  for (int64_t d = 2; d < 5; ++d) {
    const int64_t n = e.size(d);
    const int64_t k = std::max<int64_t>(1, static_cast<int64_t>(std::lround(static_cast<double>(n) * keep)));
    c = c.narrow(d, (n - k) / 2, k);
  }
  return c.square().mean();
}

}  // namespace

nlohmann::json proxy_core_one_tomogram_defaults() {
  return {{"input", "one"}, {"lowpass_skip", 0.0}, {"target", "data"}, {"detach", true}, {"symmetric", false}};
}

std::vector<MethodOption> proxy_core_options(const ProxyCoreDefaults& d) {
  return {
      {"data_weight", d.data_weight, "weight of the cross-half measured-band term |M(y_b - G(y_a))|^2"},
      {"eq_weight", d.eq_weight,
       "weight of the proxy term |W(R G(y_b) - G(T_M(R G(y_a)) + noise))|^2 (the T_M o R target)"},
      {"wedge_weight", d.wedge_weight,
       "inside the proxy term: weight of the band only the target has (M_R(1-M)) vs the band both have"},
      {"proxy_noise", d.noise,
       "noise added to the proxy term's pseudo-observations: halves (another sample's (y_a-y_b)/sqrt2: the "
       "data's level and spectrum) | white (wedge-filtered, same variance) | none (a prior's "
       "pseudo-observations then still get halves)"},
      {"symmetric", d.symmetric,
       "both directions a->b and b->a every step (4 passes); false: one, halves swapped at random (3)"},
      {"detach", d.detach, "no gradient through the proxy's targets and pseudo-inputs (G as its own teacher)"},
      {"rotations", d.rotations,
       "cube (exact cube rotations that move the wedge) | haar (SO(3), trilinear, centre crop) | mix"},
      {"min_fraction", 0.5,
       "cube rotations used: those moving at least this fraction of the missing region into measured territory"},
      {"crop", true,
       "centre-crop rotated volumes to the largest size-multiple <= patch/sqrt(2) (needed for haar/mix; "
       "cube rotations never crop)"},
      {"ddw_weight", d.ddw_weight, "weight of a DeepDeWedge term T_M(R y_a) -> R y_b (0: off)"},
      {"target", d.target,
       "target of the proxy term: restoration (R G(y_b), one more forward pass) | data (R y_b, the other "
       "half itself: Noise2Noise-style, no extra pass)"},
      {"pad", false,
       "apply the wedge (T_M) and the losses' band filters on the crop zero-padded to twice its edge, "
       "so they do not wrap one face onto the other (ICECREAM's wedge_double_size)"},
      {"loss_window", 1.0,
       "the data and proxy terms count only the central fraction of each edge of the crop (the "
       "rest is context; ICECREAM uses 0.5); 1: the whole crop"},
      {"input", "halves",
       "what it trains on: halves (--even/--odd) | one (one tomogram, --in: both halves are that "
       "tomogram; train sets it, with the one-tomogram defaults, when given --in)"},
  };
}

ProxyCoreBase::ProxyCoreBase(const nlohmann::json& r)
    : UNetMethod(r),
      data_weight_(r.at("data_weight").get<double>()),
      eq_weight_(r.at("eq_weight").get<double>()),
      wedge_weight_(r.at("wedge_weight").get<double>()),
      ddw_weight_(r.at("ddw_weight").get<double>()),
      noise_(r.at("proxy_noise").get<std::string>()),
      target_(r.at("target").get<std::string>()),
      one_tomogram_(r.at("input").get<std::string>() == "one"),
      symmetric_(r.at("symmetric").get<bool>()),
      detach_(r.at("detach").get<bool>()),
      crop_(r.at("crop").get<bool>()),
      bands_{r.at("pad").get<bool>(), r.at("loss_window").get<double>()},
      rotations_(wedge_rotations_parse(r.at("rotations").get<std::string>(), "proxy core"),
                 r.at("min_fraction").get<double>()) {
  if (data_weight_ < 0 || eq_weight_ < 0 || wedge_weight_ < 0 || ddw_weight_ < 0) {
    throw ValueError("data_weight, eq_weight, wedge_weight and ddw_weight must be >= 0; got " +
                     r.dump());
  }
  if (!(bands_.window > 0 && bands_.window <= 1)) {
    throw ValueError("loss_window = " + r.at("loss_window").dump() + " (a fraction in (0, 1])");
  }
  if (target_ != "restoration" && target_ != "data") {
    throw ValueError("target = '" + target_ + "' (restoration | data)");
  }
  if (noise_ != "halves" && noise_ != "white" && noise_ != "none") {
    throw ValueError("proxy_noise = '" + noise_ + "' (halves | white | none)");
  }
  if (!one_tomogram_ && r.at("input").get<std::string>() != "halves") {
    throw ValueError("input = '" + r.at("input").get<std::string>() + "' (halves | one)");
  }
}

ProxyStep ProxyCoreBase::proxy_setup(const Batch& batch) {
  method_check_batch_tensor(name(), one_tomogram_ ? "input" : "input (even half)", batch.input);
  // One tomogram: it is both halves (the data term keeps its measured band, ñ of "halves" is 0).
  const torch::Tensor& other = one_tomogram_ ? batch.input : batch.target;
  method_check_batch_tensor(name(), "target (odd half)", other);
  if (batch.input.sizes() != other.sizes()) {
    throw ShapeError("method " + name() + ": halves differ in shape: " +
                     c10::str(batch.input.sizes()) + " vs " + c10::str(other.sizes()));
  }
  const auto dev = batch.device();
  const int64_t b = batch.input.size(0);
  const std::array<int64_t, 3> patch{batch.input.size(2), batch.input.size(3), batch.input.size(4)};
  auto geoms = wedge_batch_geometries(batch, b);
  ProxyStep st;
  st.y_a = batch.input;
  st.y_b = other;  // [B, 1, P, P, P]
  if (!symmetric_) {
    auto s = torch::randint(2, {b, 1, 1, 1, 1}, torch::kLong).to(dev).to(torch::kBool);
    auto t = torch::where(s, st.y_b, st.y_a);
    st.y_b = torch::where(s, st.y_a, st.y_b);
    st.y_a = t;
  }
  st.sigma2 = noise_variance_from_halves(st.y_a, st.y_b);       // [B]
  st.m_patch = wedge_batch_masks(patch, geoms, masks_, dev);     // [B, 1, P, P, P/2+1]
  st.rot = rotations_.draw(patch, geoms, dev);
  st.crop = proxy_crop(patch);
  const std::array<int64_t, 3> shape{st.crop, st.crop, st.crop};
  st.m = wedge_batch_masks(shape, geoms, masks_, dev);
  st.m_rot = wedge_batch_masks_rotated(shape, geoms, st.rot.R).to(st.y_a.dtype());
  if (bands_.pad) {
    const std::array<int64_t, 3> padded{2 * st.crop, 2 * st.crop, 2 * st.crop};
    st.m_pad = wedge_batch_masks(padded, geoms, masks_, dev);
    st.m_rot_pad = wedge_batch_masks_rotated(padded, geoms, st.rot.R).to(st.y_a.dtype());
    st.m_patch_pad = wedge_batch_masks({2 * patch[0], 2 * patch[1], 2 * patch[2]}, geoms, masks_, dev);
  }
  torch::NoGradGuard no_grad;
  auto halves = [&] {
    auto d = (st.y_a - st.y_b) / std::sqrt(2.0);  // the data's noise, level and spectrum
    if (b > 1) d = torch::roll(d, {1}, {0});       // another sample's: independent of this one
    return center_crop3(d, shape);
  };
  if (noise_ == "halves") {
    st.noise = halves();
  } else if (noise_ == "white") {
    st.noise = wedge_matched_noise(center_crop3(st.y_a, shape), st.m, st.sigma2);
  } else {
    st.noise = torch::zeros({b, 1, st.crop, st.crop, st.crop}, st.y_a.options());
  }
  // A prior compares pseudo-observations with real, noisy ones: they always carry noise.
  st.prior_noise = noise_ == "none" ? halves() : st.noise;
  return st;
}

ProxyStep ProxyCoreBase::core_step(const Batch& batch) {
  ProxyStep st = proxy_setup(batch);
  st.x_hat = forward_padded(st.y_a);
  torch::Tensor xb;
  if (target_ == "data") {
    xb = st.y_b;  // the proxy's target is the other half itself
    if (symmetric_) xb = forward_padded(st.y_b);
  } else if (symmetric_) {
    xb = forward_padded(st.y_b);
  } else {
    torch::NoGradGuard no_grad;
    xb = forward_padded(st.y_b);
  }
  direction(st.y_a, st.y_b, st.x_hat, xb, st, /*first=*/true);
  if (symmetric_) direction(st.y_b, st.y_a, xb, st.x_hat, st, /*first=*/false);
  st.total = data_weight_ * st.data + eq_weight_ * st.proxy;
  if (st.ddw.defined()) st.total = st.total + ddw_weight_ * st.ddw;
  return st;
}

void ProxyCoreBase::direction(const torch::Tensor& ya, const torch::Tensor& yb,
                              const torch::Tensor& xa, const torch::Tensor& xb, ProxyStep& st,
                              bool first) {
  auto data = proxy_band_mean_sq(xa - yb, bands_.pad ? st.m_patch_pad : st.m_patch, bands_);
  torch::Tensor proxy;
  if (eq_weight_ > 0) {
    const torch::Tensor& target = target_ == "data" ? yb : xb;
    proxy = wedge_proxy_term([this](const torch::Tensor& v) { return forward_padded(v); },
                             detach_ ? xa.detach() : xa, detach_ ? target.detach() : target, st.rot,
                             st.crop, bands_.pad ? st.m_pad : st.m, bands_.pad ? st.m_rot_pad : st.m_rot,
                             st.noise, wedge_weight_, bands_);
  } else {
    proxy = torch::zeros({}, data.options());
  }
  st.data = first ? data : st.data + data;
  st.proxy = first ? proxy : st.proxy + proxy;
  if (first && ddw_weight_ > 0) {
    auto in = wedge_apply(wedge_rotate(ya, st.rot, st.crop), st.m);  // T_M(R y_a)
    auto target = wedge_rotate(yb, st.rot, st.crop);                 // R y_b
    st.ddw = ddw_loss(forward_padded(in), target, st.m_rot, st.m, /*lambda=*/2.0).total;
  }
}

torch::Tensor wedge_proxy_term(const std::function<torch::Tensor(const torch::Tensor&)>& g,
                               const torch::Tensor& x_a, const torch::Tensor& x_b,
                               const WedgeRotationDraw& rot, int64_t crop, const torch::Tensor& m,
                               const torch::Tensor& m_rot, const torch::Tensor& noise,
                               double wedge_weight, const ProxyBands& bands) {
  auto rxa = wedge_rotate(x_a, rot, crop);   // R x̂_a [B, 1, n, n, n]
  auto rxb = wedge_rotate(x_b, rot, crop);   // R x̂_b
  auto in = proxy_measure(rxa, m, bands);    // T_M(R x̂_a)
  if (noise.defined()) in = in + noise;
  auto w = m_rot * (m + std::sqrt(wedge_weight) * (1.0 - m));
  return proxy_band_mean_sq(g(in) - rxb, w, bands);
}

torch::Tensor proxy_measure(const torch::Tensor& v, const torch::Tensor& m, const ProxyBands& bands) {
  return bands.pad ? band_filter_padded(v, m) : wedge_apply(v, m);
}

torch::Tensor proxy_band_mean_sq(const torch::Tensor& e, const torch::Tensor& w, const ProxyBands& bands) {
  if (!bands.pad && bands.window >= 1.0) {
    return fourier_band_mean_sq(fourier_rfft3(e), w.to(e.dtype()), e.size(-1));  // Parseval
  }
  auto f = bands.pad ? band_filter_padded(e, w)
                     : fourier_irfft3(w.to(e.dtype()) * fourier_rfft3(e), {e.size(-3), e.size(-2), e.size(-1)});
  return central_mean_sq(f, bands.window);
}

torch::Tensor ProxyCoreBase::pseudo_observation(const torch::Tensor& v, const ProxyStep& st) const {
  return proxy_measure(wedge_rotate(v, st.rot, st.crop), bands_.pad ? st.m_pad : st.m, bands_) +
         st.prior_noise;
}

torch::Tensor ProxyCoreBase::real_observation(const ProxyStep& st) const {
  return center_crop3(st.y_a, {st.crop, st.crop, st.crop}).detach();
}

int64_t ProxyCoreBase::proxy_crop(std::array<int64_t, 3> patch) const {
  return wedge_rotated_edge(patch, crop_, rotations_.set(), size_multiple()[0], name());
}

torch::Tensor band_filter_padded(const torch::Tensor& v, const torch::Tensor& w) {
  const int64_t z = v.size(-3), y = v.size(-2), x = v.size(-1);
  auto p = torch::constant_pad_nd(v, {0, x, 0, y, 0, z});
  auto f = fourier_irfft3(w.to(v.dtype()) * fourier_rfft3(p), {2 * z, 2 * y, 2 * x});
  return f.narrow(-3, 0, z).narrow(-2, 0, y).narrow(-1, 0, x);
}

torch::Tensor wedge_component_only(const torch::Tensor& x, const torch::Tensor& m) {
  return wedge_refill(x.detach(), x, m);
}

std::optional<double> adaptive_prior_weight(const torch::Tensor& core, const torch::Tensor& prior,
                                            const torch::Tensor& param, double share,
                                            double max_weight) {
  if (!torch::GradMode::is_enabled() || !core.requires_grad() || !prior.requires_grad()) {
    return std::nullopt;
  }
  auto gc = torch::autograd::grad({core}, {param}, {}, /*retain_graph=*/true,
                                  /*create_graph=*/false, /*allow_unused=*/true)[0];
  auto gp = torch::autograd::grad({prior}, {param}, {}, /*retain_graph=*/true,
                                  /*create_graph=*/false, /*allow_unused=*/true)[0];
  if (!gc.defined() || !gp.defined()) return 0.0;
  const double nc = gc.norm().item<double>(), np = gp.norm().item<double>();
  if (!(np > 0) || !std::isfinite(np) || !std::isfinite(nc)) return 0.0;
  return std::clamp(share / (1.0 - share) * nc / np, 0.0, max_weight);
}

std::vector<MethodOption> wedge_prior_options(const std::string& what) {
  return {
      {"prior_share", 0.1,
       "share of the gradient on G's last layer carried by " + what + " (adaptive weight; 0: off)"},
      {"prior_start", int64_t{50}, "step from which " + what + " is on (warm-up)"},
      {"prior_every", int64_t{1},
       "compute " + what + " every this many steps, its weight times as many (lazy: the same "
       "average gradient for a fraction of the cost)"},
      {"max_prior_weight", 100.0, "upper bound of the adaptive prior weight"},
  };
}

WedgePriorWeight::WedgePriorWeight(const nlohmann::json& r, const std::string& method)
    : share_(r.at("prior_share").get<double>()),
      max_weight_(r.at("max_prior_weight").get<double>()),
      start_(r.at("prior_start").get<int64_t>()),
      every_(r.at("prior_every").get<int64_t>()) {
  if (!(share_ >= 0 && share_ < 1) || start_ < 0 || every_ < 1 || !(max_weight_ >= 0)) {
    throw ValueError("method " + method + ": need 0 <= prior_share < 1, prior_start >= 0, " +
                     "prior_every >= 1 and max_prior_weight >= 0; got " + r.at("prior_share").dump() +
                     ", " + r.at("prior_start").dump() + ", " + r.at("prior_every").dump() + ", " +
                     r.at("max_prior_weight").dump());
  }
}

double WedgePriorWeight::weigh(const torch::Tensor& core, const torch::Tensor& prior,
                               const torch::Tensor& param) {
  if (auto w = adaptive_prior_weight(core, prior, param, share_, max_weight_)) {
    last_ = static_cast<double>(every_) * *w;
  }
  return last_;
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
