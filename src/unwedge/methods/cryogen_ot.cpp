// cryogen-ot (CryoGEN-II): generator G with the measured-band data term across halves, plus an
// optimal-transport discrepancy between the distribution of pseudo-observations T_M(R G(y)) + ñ
// and that of real observations: sliced Wasserstein (default) or Sinkhorn divergence, on points
// that are the local feature vectors of an autoencoder trained on real observations in aux_step()
// (features = "encoder", WAE style) or non-overlapping 4³ voxel blocks (features = "voxels").
// Points are divided by √D (costs per feature dimension) and subsampled to ot_points per cloud.
// One deterministic restoration per input: restore() = G(y), no min–max game.
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

class CryoGenOt : public CryoGenBase {
 public:
  explicit CryoGenOt(const nlohmann::json& r)
      : CryoGenBase(r),
        ot_(r.at("ot").get<std::string>()),
        features_(r.at("features").get<std::string>()),
        ot_weight_(r.at("ot_weight").get<double>()),
        projections_(r.at("projections").get<int64_t>()),
        epsilon_(r.at("epsilon").get<double>()),
        iters_(r.at("sinkhorn_iters").get<int64_t>()),
        points_(r.at("ot_points").get<int64_t>()),
        enc_lr_ratio_(r.at("encoder_lr_ratio").get<double>()) {
    if (ot_ != "sliced" && ot_ != "sinkhorn") {
      throw ValueError("method cryogen-ot: ot = '" + ot_ + "' (sliced | sinkhorn)");
    }
    if (features_ != "encoder" && features_ != "voxels") {
      throw ValueError("method cryogen-ot: features = '" + features_ + "' (encoder | voxels)");
    }
    if (projections_ < 1 || iters_ < 1 || points_ < 2 || !(epsilon_ > 0) || ot_weight_ < 0) {
      throw ValueError("method cryogen-ot: need projections >= 1, sinkhorn_iters >= 1, ot_points >= 2, "
                       "epsilon > 0, ot_weight >= 0; got " + r.dump());
    }
    enc_ = Encoder3d(Encoder3dOptions()
                         .channels(r.at("encoder_channels").get<int64_t>())
                         .features(r.at("encoder_features").get<int64_t>()));
    enc_opt_ = std::make_unique<torch::optim::Adam>(enc_->parameters(), torch::optim::AdamOptions(2e-4));
  }

  std::string name() const override { return "cryogen-ot"; }

  /// Autoencoder step on real observations (its own optimizer, WAE style); nothing for voxel
  /// features.
  void aux_step(const Batch& batch, const StepContext& ctx) override {
    if (features_ != "encoder") return;
    auto real = real_observations(halves(batch).first);  // [B, 1, n, n, n]
    auto recon = enc_->decode(enc_->encode(real));
    auto l = (recon - real).square().mean();
    enc_opt_->zero_grad();
    l.backward();
    cryogen_step_scaled(*enc_opt_, enc_lr_ratio_, ctx);
    ae_loss_ = l.item<double>();
  }

  torch::Tensor loss(const Batch& batch) override {
    CryoGenStep st = generator_step(batch);
    torch::Tensor pa, pb;  // points of pseudo and real observations [N, D]
    if (features_ == "encoder") {
      pa = encoder_points(enc_->encode(st.pseudo));
      pb = encoder_points(enc_->encode(st.real)).detach();
    } else {
      pa = voxel_block_points(st.pseudo);
      pb = voxel_block_points(st.real);
    }
    pa = subsample(pa) / std::sqrt(static_cast<double>(pa.size(1)));
    pb = subsample(pb) / std::sqrt(static_cast<double>(pb.size(1)));
    auto ot = ot_ == "sliced" ? sliced_wasserstein2(pa, pb, projections_)
                              : sinkhorn_divergence(pa, pb, epsilon_, iters_);
    stats_ = {{"data", st.data.item<double>()}, {"ot", ot.item<double>()}};
    if (ae_loss_ >= 0) stats_.emplace_back("autoencoder", ae_loss_);
    return data_weight_ * st.data + ot_weight_ * ot;
  }

  /// data (measured-band term), ot (the OT discrepancy), autoencoder (its reconstruction loss).
  std::vector<std::pair<std::string, double>> step_stats() const override { return stats_; }
  std::vector<torch::optim::Optimizer*> aux_optimizers() override {
    if (features_ != "encoder") return {};
    return {enc_opt_.get()};
  }
  std::vector<torch::Tensor> parameters() override { return net_->parameters(); }
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

  /// Autoencoder reconstruction loss of the last aux_step (-1: none yet).
  double last_autoencoder_loss() const { return ae_loss_; }

 private:
  torch::Tensor subsample(const torch::Tensor& p) const {
    if (p.size(0) <= points_) return p;
    auto idx = torch::randperm(p.size(0), torch::TensorOptions().dtype(torch::kLong)).narrow(0, 0, points_);
    return p.index_select(0, idx.to(p.device()));
  }

  std::string ot_, features_;
  double ot_weight_;
  int64_t projections_;
  double epsilon_;
  int64_t iters_, points_;
  double enc_lr_ratio_;
  Encoder3d enc_{nullptr};
  std::unique_ptr<torch::optim::Adam> enc_opt_;
  double ae_loss_ = -1;
  std::vector<std::pair<std::string, double>> stats_;
};

}  // namespace

MethodInfo cryogen_ot_method_info() {
  MethodInfo info;
  info.name = "cryogen-ot";
  info.description =
      "CryoGEN-II: generator + measured-band data term + OT matching of T_M(R G(y)) to observations";
  info.can.halves = true;
  info.options = cryogen_common_options();
  for (MethodOption o : std::vector<MethodOption>{
           {"ot", "sliced", "sliced (sliced Wasserstein) | sinkhorn (debiased Sinkhorn divergence)"},
           {"ot_weight", 1.0, "weight of the OT discrepancy"},
           {"features", "encoder",
            "encoder (autoencoder features trained on real observations) | voxels (4^3 blocks)"},
           {"projections", int64_t{64}, "sliced Wasserstein: random 1D projections per step"},
           {"epsilon", 0.05, "Sinkhorn: entropic regularisation (cost per feature dimension)"},
           {"sinkhorn_iters", int64_t{50}, "Sinkhorn: log-domain iterations"},
           {"ot_points", int64_t{1024}, "points per cloud (random subsample of blocks/locations)"},
           {"encoder_channels", int64_t{8}, "autoencoder: channels of the first convolution"},
           {"encoder_features", int64_t{16}, "autoencoder: feature dimension per 4^3 block"},
           {"encoder_lr_ratio", 1.0, "autoencoder learning rate / the trainer's"},
       }) {
    info.options.push_back(o);
  }
  for (auto& o : unet_method_options()) info.options.push_back(o);
  info.create = [](const nlohmann::json& r) -> std::unique_ptr<Method> {
    return std::make_unique<CryoGenOt>(r);
  };
  return info;
}

}  // namespace unwedge
