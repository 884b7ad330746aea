// cryogen-ot (CryoGEN-II): the proxy core (cryogen_common.h: the T_M∘R target on G's own outputs
// and the cross-half measured-band data term; by default in ei's form, without noise on the proxy
// term's input) plus an optimal-transport prior that acts only along what the operator cannot see:
//
//   x̂'     = M·sg(x̂) + (1−M)·x̂                  gradient only through the missing-wedge component
//   ỹ'     = T_M(R x̂') + ñ                      pseudo-observations (the step's rotations; ñ the
//                                               data's noise, another sample's (y_a − y_b)/√2,
//                                               unless proxy_noise = white)
//   y      = centre crops of the real half      real observations
//   ot     = SW2²(φ(ỹ'), φ(y)) / Var_θ(φ(y))    sliced Wasserstein on encoder features φ (every
//                                               spatial position a point), z-scored on the real
//                                               side, normalised by the real side's projected
//                                               variance (Sinkhorn divergence as an option)
//   both clouds are low-passed first (prior_lowpass: by default at the batch halves' FSC 0.5
//   crossing in the measured band, averaged over steps, and at most 0.2 cycles/voxel, so the prior
//   never sees the encoder's 4-voxel stride; with the whole band, a run put 37 % of its wedge power
//   into one Z stripe of period 4, bench/RESULTS.md)
//   loss   = core + w·ot,  w = share/(1−share)·‖∇core‖/‖∇ot‖ on G's last layer (adaptive: the
//            prior carries `prior_share` of that gradient), from step `prior_start` on.
//
// The encoder φ is the encoder of a small autoencoder trained on real observations (WAE style)
// with its own Adam, stepped in aux_step() from `encoder_start` (default 0: it warms up before
// the prior starts; with an untrained encoder the prior filled the wedge with power that was not
// the specimen's on one training seed of four, bench/RESULTS.md). One deterministic answer per
// input: restore() = G(y).
#include <algorithm>
#include <cmath>

#include "unwedge/core/error.h"
#include "unwedge/methods/cryogen_common.h"
#include "unwedge/methods/ot.h"
#include "unwedge/methods/wedge_methods.h"
#include "unwedge/nn/encoder.h"

namespace unwedge {

namespace {

// [B, 1, n, n, n] -> non-overlapping 4³ blocks [B·(n/4)³, 64].
torch::Tensor voxel_block_points(const torch::Tensor& v) {
  const int64_t b = v.size(0), z = v.size(2) / 4, y = v.size(3) / 4, x = v.size(4) / 4;
  if (v.size(2) % 4 || v.size(3) % 4 || v.size(4) % 4) {
    throw ShapeError("cryogen-ot: voxel features need sizes divisible by 4, got " + c10::str(v.sizes()));
  }
  return v.reshape({b, z, 4, y, 4, x, 4}).permute({0, 1, 3, 5, 2, 4, 6}).reshape({-1, 64});
}

class CryoGenOt : public ProxyCoreBase {
 public:
  explicit CryoGenOt(const nlohmann::json& r)
      : ProxyCoreBase(r),
        prior_(r, "cryogen-ot"),
        ot_(r.at("ot").get<std::string>()),
        features_(r.at("features").get<std::string>()),
        projections_(r.at("projections").get<int64_t>()),
        epsilon_(r.at("epsilon").get<double>()),
        iters_(r.at("sinkhorn_iters").get<int64_t>()),
        points_(r.at("ot_points").get<int64_t>()),
        enc_lr_ratio_(r.at("encoder_lr_ratio").get<double>()),
        encoder_start_(r.at("encoder_start").get<int64_t>()),
        lowpass_(r.at("prior_lowpass").get<double>()),
        lowpass_max_(r.at("prior_lowpass_max").get<double>()),
        fsc_threshold_(r.at("prior_fsc").get<double>()) {
    if (lowpass_ > 0.5 || !(lowpass_max_ > 0 && lowpass_max_ <= 0.5) || !(fsc_threshold_ > 0 && fsc_threshold_ < 1)) {
      throw ValueError("method cryogen-ot: need prior_lowpass <= 0.5 (0: auto, < 0: off), prior_lowpass_max "
                       "in (0, 0.5] and prior_fsc in (0, 1); got " + r.at("prior_lowpass").dump() + ", " +
                       r.at("prior_lowpass_max").dump() + ", " + r.at("prior_fsc").dump());
    }
    if (ot_ != "sliced" && ot_ != "sinkhorn") {
      throw ValueError("method cryogen-ot: ot = '" + ot_ + "' (sliced | sinkhorn)");
    }
    if (features_ != "encoder" && features_ != "voxels") {
      throw ValueError("method cryogen-ot: features = '" + features_ + "' (encoder | voxels)");
    }
    if (encoder_start_ < -1) {
      throw ValueError("method cryogen-ot: encoder_start = " + std::to_string(encoder_start_) +
                       " (a step >= 0, or -1: with the prior)");
    }
    if (projections_ < 1 || iters_ < 1 || points_ < 2 || !(epsilon_ > 0)) {
      throw ValueError("method cryogen-ot: need projections >= 1, sinkhorn_iters >= 1, ot_points >= 2, "
                       "epsilon > 0; got " + r.dump());
    }
    enc_ = Encoder3d(Encoder3dOptions()
                         .channels(r.at("encoder_channels").get<int64_t>())
                         .features(r.at("encoder_features").get<int64_t>()));
    enc_opt_ = std::make_unique<torch::optim::Adam>(enc_->parameters(), torch::optim::AdamOptions(2e-4));
  }

  std::string name() const override { return "cryogen-ot"; }

  /// Autoencoder step on real observations (centre crops of the even half; its own optimizer,
  /// WAE style), from encoder_start on (with the prior when negative); nothing for voxel features.
  void aux_step(const Batch& batch, const StepContext& ctx) override {
    if (features_ != "encoder" || !prior_.enabled()) return;
    const bool warm_up =
        encoder_start_ >= 0 && batch.step >= encoder_start_ && batch.step < prior_.start();
    if (!warm_up && !prior_.on(batch.step)) return;
    method_check_batch_tensor(name(), "input (even half)", batch.input);
    update_band(batch);
    const int64_t n = proxy_crop({batch.input.size(2), batch.input.size(3), batch.input.size(4)});
    auto real = prior_band(center_crop3(batch.input, {n, n, n})).detach();  // [B, 1, n, n, n]
    auto l = (enc_->decode(enc_->encode(real)) - real).square().mean();
    enc_opt_->zero_grad();
    l.backward();
    cryogen_step_scaled(*enc_opt_, enc_lr_ratio_, ctx);
    enc_opt_->zero_grad();
    ae_loss_ = l.item<double>();
  }

  torch::Tensor loss(const Batch& batch) override {
    ProxyStep st = core_step(batch);
    stats_ = {{"data", st.data.item<double>()}, {"proxy", st.proxy.item<double>()}};
    if (st.ddw.defined()) stats_.emplace_back("ddw", st.ddw.item<double>());
    if (prior_.enabled()) update_band(batch);
    if (!prior_.on(batch.step)) return st.total;
    auto real = prior_band(real_observation(st));                              // [B, 1, n, n, n]
    auto pseudo = prior_band(pseudo_observation(wedge_component_only(st.x_hat, st.m_patch), st));
    auto ot = ot_discrepancy(pseudo, real);
    const double w = prior_.weigh(st.total, ot, net_->named_parameters()["head.weight"]);
    stats_.emplace_back("ot", ot.item<double>());
    stats_.emplace_back("ot_weight", w);
    stats_.emplace_back("prior_lowpass", cutoff());
    if (ae_loss_ >= 0) stats_.emplace_back("autoencoder", ae_loss_);
    return st.total + w * ot;
  }

  /// data, proxy (the T_M∘R term), ot (normalised discrepancy), ot_weight (adaptive weight),
  /// prior_lowpass (the prior's cutoff, cycles/voxel; 0: none), autoencoder (its reconstruction loss).
  std::vector<std::pair<std::string, double>> step_stats() const override { return stats_; }
  std::vector<torch::optim::Optimizer*> aux_optimizers() override {
    if (features_ != "encoder") return {};
    return {enc_opt_.get()};
  }
  void train(bool on) override {
    net_->train(on);
    enc_->train(on);
  }
  void to(torch::Device device) override {
    net_->to(device);
    enc_->to(device);
  }
  void save(torch::serialize::OutputArchive& archive) const override {
    UNetMethod::save(archive);
    torch::serialize::OutputArchive e, o;
    enc_->save(e);
    enc_opt_->save(o);
    archive.write("encoder", e);
    archive.write("encoder_opt", o);
  }
  void load(torch::serialize::InputArchive& archive) override {
    UNetMethod::load(archive);
    torch::serialize::InputArchive e, o;
    if (!archive.try_read("encoder", e) || !archive.try_read("encoder_opt", o)) {
      throw FormatError("method cryogen-ot: saved state has no encoder ('encoder', 'encoder_opt')");
    }
    enc_->load(e);
    enc_opt_->load(o);
  }

 private:
  // Adds this training step's half-map FSC sums (measured band of the batch) to the running
  // average behind the automatic cutoff; once per step, not during validation.
  void update_band(const Batch& batch) {
    if (lowpass_ != 0 || !torch::GradMode::is_enabled() || batch.step == band_step_) return;
    band_step_ = batch.step;
    const std::array<int64_t, 3> patch{batch.input.size(2), batch.input.size(3), batch.input.size(4)};
    auto m = wedge_batch_masks(patch, wedge_batch_geometries(batch, batch.input.size(0)), masks_,
                               batch.device());
    auto s = halves_fsc_sums(batch.input, one_tomogram_ ? batch.input : batch.target, m);
    const int64_t edge = std::min({patch[0], patch[1], patch[2]});
    const bool fresh = !fsc_sums_.defined() || edge != fsc_edge_;
    fsc_sums_ = fresh ? s : 0.9 * fsc_sums_ + 0.1 * s;  // the ratio is what counts
    fsc_edge_ = edge;
  }

  // The prior's cutoff in cycles/voxel (0: no filter).
  double cutoff() const {
    if (lowpass_ < 0) return 0.0;
    if (lowpass_ > 0) return lowpass_;
    if (!fsc_sums_.defined()) return lowpass_max_;
    return std::min(lowpass_max_, halves_fsc_crossing(fsc_sums_, fsc_edge_, fsc_threshold_, lowpass_max_));
  }

  // What the prior compares: v low-passed at cutoff() (edge 0.05 cycles/voxel wide).
  torch::Tensor prior_band(const torch::Tensor& v) const {
    const double c = cutoff();
    return c > 0 ? lowpass_cosine(v, c, 0.05) : v;
  }

  // The normalised OT discrepancy between pseudo [B,1,n,n,n] (with its graph) and real ones.
  torch::Tensor ot_discrepancy(const torch::Tensor& pseudo, const torch::Tensor& real) {
    torch::Tensor pa, pb;  // points [N, D]
    if (features_ == "encoder") {
      pa = encoder_points(enc_->encode(pseudo));
      pb = encoder_points(enc_->encode(real)).detach();
    } else {
      pa = voxel_block_points(pseudo);
      pb = voxel_block_points(real);
    }
    auto mu = pb.mean(0, /*keepdim=*/true);
    auto sd = pb.std(0, /*unbiased=*/true, /*keepdim=*/true).clamp_min(1e-6);
    pa = subsample((pa - mu) / sd);  // z-scored on the real side
    pb = subsample((pb - mu) / sd);
    if (ot_ == "sliced") return sliced_wasserstein2_normalised(pa, pb, projections_);
    const double d = static_cast<double>(pa.size(1));
    return sinkhorn_divergence(pa / std::sqrt(d), pb / std::sqrt(d), epsilon_, iters_);
  }

  torch::Tensor subsample(const torch::Tensor& p) const {
    if (p.size(0) <= points_) return p;
    auto idx = torch::randperm(p.size(0), torch::TensorOptions().dtype(torch::kLong)).narrow(0, 0, points_);
    return p.index_select(0, idx.to(p.device()));
  }

  WedgePriorWeight prior_;
  std::string ot_, features_;
  int64_t projections_;
  double epsilon_;
  int64_t iters_, points_;
  double enc_lr_ratio_;
  int64_t encoder_start_;
  Encoder3d enc_{nullptr};
  std::unique_ptr<torch::optim::Adam> enc_opt_;
  double lowpass_, lowpass_max_, fsc_threshold_;
  torch::Tensor fsc_sums_;  // running average of halves_fsc_sums (automatic cutoff)
  int64_t fsc_edge_ = 0;    // the smallest patch edge of fsc_sums_'s shells
  int64_t band_step_ = -1;  // the step fsc_sums_ last took
  double ae_loss_ = -1;  // the autoencoder's loss of the last aux_step (-1: none yet)
  std::vector<std::pair<std::string, double>> stats_;
};

}  // namespace

MethodInfo cryogen_ot_method_info() {
  MethodInfo info;
  info.name = "cryogen-ot";
  info.description =
      "CryoGEN-II: T_M o R target on its own outputs + cross-half data term + OT prior on the wedge";
  info.can.halves = true;
  info.can.single = true;
  // One tomogram: the core's one-tomogram options, and the prior, which needs noisy
  // pseudo-observations, off (bench/RESULTS.md, "cryogen-ot on one tomogram").
  info.one_tomogram_defaults = proxy_core_one_tomogram_defaults();
  info.one_tomogram_defaults["prior_share"] = 0.0;
  info.few_steps = 100;
  ProxyCoreDefaults d;
  d.noise = "none";  // the prior's pseudo-observations still get the data's noise (prior_noise)
  info.options = proxy_core_options(d);
  for (auto& o : wedge_prior_options("the OT prior")) info.options.push_back(o);
  for (MethodOption o : std::vector<MethodOption>{
           {"ot", "sliced", "sliced (normalised sliced Wasserstein) | sinkhorn (debiased Sinkhorn divergence)"},
           {"features", "encoder",
            "encoder (autoencoder features trained on real observations) | voxels (4^3 blocks)"},
           {"projections", int64_t{128}, "sliced Wasserstein: random 1D projections per step"},
           {"epsilon", 0.05, "Sinkhorn: entropic regularisation (cost per feature dimension)"},
           {"sinkhorn_iters", int64_t{50}, "Sinkhorn: log-domain iterations"},
           {"ot_points", int64_t{2048}, "points per cloud (random subsample of locations)"},
           {"encoder_channels", int64_t{8}, "autoencoder: channels of the first convolution"},
           {"encoder_features", int64_t{16}, "autoencoder: feature dimension per 4^3 block"},
           {"encoder_lr_ratio", 1.0, "autoencoder learning rate / the trainer's"},
           {"prior_lowpass", 0.0,
            "what the prior compares is low-passed first (cycles/voxel, raised-cosine edge 0.05 wide); "
            "0: auto, where the half-map FSC of the training batches (measured band, averaged over steps) "
            "first falls below prior_fsc, at most prior_lowpass_max; < 0: off (the whole band)"},
           {"prior_fsc", 0.5, "auto prior_lowpass: the half-map FSC threshold"},
           {"prior_lowpass_max", 0.2,
            "auto prior_lowpass: the largest cutoff (0.2 keeps the prior away from 0.25, the frequency "
            "of the encoder's 4-voxel stride)"},
           {"encoder_start", int64_t{0},
            "step from which the autoencoder trains, before the prior starts, so that the prior "
            "acts on learnt features (-1: from prior_start, with the prior)"},
       }) {
    info.options.push_back(o);
  }
  for (auto& o : unet_method_options({{"lowpass_skip", 0.1}, {"zero_head", true}})) info.options.push_back(o);
  info.create = [](const nlohmann::json& r) -> std::unique_ptr<Method> {
    return std::make_unique<CryoGenOt>(r);
  };
  return info;
}

}  // namespace unwedge
