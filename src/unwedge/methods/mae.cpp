// mae: masking, loss and the method.
#include "unwedge/methods/mae.h"

#include <cmath>
#include <numeric>
#include <string>

#include "unwedge/core/error.h"
#include "unwedge/methods/embed.h"
#include "unwedge/methods/net_state.h"
#include "unwedge/methods/unet_method.h"
#include "unwedge/nn/unet3d.h"
#include "unwedge/nn/vit3d.h"
#include "unwedge/ops/fourier.h"
#include "unwedge/ops/rotate.h"
#include "unwedge/ops/wedge.h"

namespace unwedge {

MaeMask mae_random_mask(int64_t b, int64_t n, double ratio, torch::Device device) {
  if (!(ratio >= 0 && ratio < 1)) {
    throw ValueError("mae: mask_ratio " + std::to_string(ratio) + " is not in [0, 1)");
  }
  const int64_t hide = std::llround(ratio * double(n));
  if (hide >= n) {
    throw ValueError("mae: mask_ratio " + std::to_string(ratio) + " hides all " +
                     std::to_string(n) + " patches");
  }
  auto fopt = torch::TensorOptions().dtype(torch::kFloat).device(device);
  auto perm = torch::rand({b, n}, fopt).argsort(int64_t(1));                       // [B, N]
  auto keep = std::get<0>(perm.narrow(1, hide, n - hide).sort(1));       // [B, K]
  auto hidden = torch::ones({b, n}, fopt).scatter(1, keep, 0.0);         // [B, N]
  return {keep, hidden};
}

torch::Tensor mae_loss(const torch::Tensor& pred, const torch::Tensor& target,
                       const torch::Tensor& hidden, bool norm_pix) {
  auto t = target;
  if (norm_pix) {
    auto mean = t.mean(-1, /*keepdim=*/true);
    auto var = t.var(-1, /*unbiased=*/false, /*keepdim=*/true);
    t = (t - mean) / (var + 1e-6).sqrt();
  }
  auto per_patch = (pred - t).pow(2).mean(-1);  // [B, N]
  return (per_patch * hidden).sum() / hidden.sum().clamp_min(1.0);
}

namespace {

// sample_loss=log: each sample's loss is log(MSE + kLogLossFloor) (data normalised to unit
// variance: the floor stops flat, empty crops from dominating).
constexpr double kLogLossFloor = 0.01;

enum class MaeMode { patch, wedge };

// The first `count` visible tokens of each sample, ascending, from hidden [B, N] (1 = hidden):
// visible tokens sort first, each group in index order.
torch::Tensor visible_tokens(const torch::Tensor& hidden, int64_t count) {
  const int64_t n = hidden.size(1);
  return std::get<0>((hidden + torch::arange(n, hidden.options()).div(2.0 * n))
                         .argsort(int64_t(1))
                         .narrow(1, 0, count)
                         .sort(1));
}

WedgeGeometry to_geometry(const MethodWedge& w) {
  WedgeGeometry g;
  g.tilt_min_deg = w.tilt_min_deg;
  g.tilt_max_deg = w.tilt_max_deg;
  g.sign_flip = w.flip_sign;
  return g;
}

class Mae : public Method, public Embedder {
 public:
  explicit Mae(const nlohmann::json& r) : options_(r) {
    const auto net = r.at("net").get<std::string>();
    if (net != "vit" && net != "unet") {
      throw ValueError("mae: net '" + net + "' is not vit or unet");
    }
    ViT3dOptions o;
    o.patch(r.at("patch").get<int64_t>())
        .dim(r.at("dim").get<int64_t>())
        .depth(r.at("depth").get<int64_t>())
        .heads(r.at("heads").get<int64_t>())
        .decoder_dim(r.at("decoder_dim").get<int64_t>())
        .decoder_depth(r.at("decoder_depth").get<int64_t>())
        .decoder_heads(r.at("decoder_heads").get<int64_t>());
    net_ = ViT3d(o);
    ratio_ = r.at("mask_ratio").get<double>();
    ratio_min_ = r.at("mask_ratio_min").get<double>();
    width_min_ = r.at("wedge_width_min_deg").get<double>();
    norm_pix_ = r.at("norm_pix").get<bool>();
    passes_ = r.at("restore_passes").get<int64_t>();
    per_sample_ = r.at("ratio_per_sample").get<bool>();
    const auto draw = r.at("ratio_draw").get<std::string>();
    if (draw != "uniform" && draw != "low") {
      throw ValueError("mae: ratio_draw '" + draw + "' is not uniform or low");
    }
    draw_low_ = draw == "low";
    const auto sl = r.at("sample_loss").get<std::string>();
    if (sl != "mse" && sl != "log") {
      throw ValueError("mae: sample_loss '" + sl + "' is not mse or log");
    }
    log_loss_ = sl == "log";
    width_ = r.at("wedge_width_deg").get<double>();
    const auto mode = r.at("mask_mode").get<std::string>();
    if (mode == "patch") {
      mode_ = MaeMode::patch;
    } else if (mode == "wedge") {
      mode_ = MaeMode::wedge;
    } else {
      throw ValueError("mae: mask_mode '" + mode + "' is not patch or wedge");
    }
    if (!(ratio_ > 0 && ratio_ < 1)) {
      throw ValueError("mae: mask_ratio " + std::to_string(ratio_) + " is not in (0, 1)");
    }
    if (passes_ < 2) {
      throw ValueError("mae: restore_passes " + std::to_string(passes_) + " is not >= 2");
    }
    if (!(width_ > 0 && width_ < 180)) {
      throw ValueError("mae: wedge_width_deg " + std::to_string(width_) + " is not in (0, 180)");
    }
    if (!(ratio_min_ >= 0 && ratio_min_ <= ratio_)) {
      throw ValueError("mae: mask_ratio_min " + std::to_string(ratio_min_) +
                       " is not in [0, mask_ratio]");
    }
    if (!(width_min_ >= 0 && width_min_ <= width_)) {
      throw ValueError("mae: wedge_width_min_deg " + std::to_string(width_min_) +
                       " is not in [0, wedge_width_deg]");
    }
    if (net == "unet") {
      // Patch mode: the masked volume and the mask in, the volume out (no residual: the
      // hidden voxels are zeros in the input). Wedge mode: the wedged volume in, residual.
      UNet3dOptions u;
      u.in_channels(mode_ == MaeMode::patch ? 2 : 1)
          .depth(r.at("unet_depth").get<int64_t>())
          .base_channels(r.at("unet_channels").get<int64_t>())
          .residual(mode_ == MaeMode::wedge);
      unet3d_options_check(u);
      unet_ = UNet3d(u);
    }
  }

  std::string name() const override { return "mae"; }
  bool needs_halves() const override { return false; }
  bool bf16_ok() const override { return false; }

  torch::Tensor loss(const Batch& batch) override {
    method_check_batch_tensor(name(), "input", batch.input);
    const auto& x = batch.input;  // [B, 1, Z, Y, X]
    auto grid = net_->grid_of(x);
    const int64_t b = x.size(0), n = grid[0] * grid[1] * grid[2];
    if (mode_ == MaeMode::patch) {
      auto target = vit3d_patchify(x, net_->options().patch());
      if (unet_ && per_sample_ && ratio_min_ > 0 && ratio_min_ < ratio_) {
        // Every sample its own ratio, stratified over [ratio_min_, ratio_] so that each batch
        // covers the range, and every sample's loss weighs the same whatever it hides.
        std::vector<torch::Tensor> hidden;
        auto u = torch::rand({b}, torch::kDouble);
        for (int64_t i = 0; i < b; ++i) {
          double t = (double(i) + u[i].item<double>()) / double(b);
          if (draw_low_) t = t * t;
          hidden.push_back(
              mae_random_mask(1, n, ratio_min_ + (ratio_ - ratio_min_) * t, x.device()).hidden);
        }
        auto h = torch::cat(hidden, 0);  // [B, N]
        auto pred = predict_patches(x, torch::Tensor(), h, grid);
        torch::Tensor total;
        for (int64_t i = 0; i < b; ++i) {
          auto li = mae_loss(pred.narrow(0, i, 1), target.narrow(0, i, 1), h.narrow(0, i, 1),
                             norm_pix_);
          if (log_loss_) li = (li + kLogLossFloor).log();
          total = total.defined() ? total + li : li;
        }
        return total / double(b);
      }
      auto m = mae_random_mask(b, n, draw(ratio_min_, ratio_), x.device());
      auto pred = predict_patches(x, m.keep, m.hidden, grid);  // [B, N, p^3]
      return mae_loss(pred, target, m.hidden, norm_pix_);
    }
    std::array<int64_t, 3> shape{x.size(2), x.size(3), x.size(4)};
    auto hide = wedge_hide_mask(b, shape, x.device(), draw(width_min_, width_));
    auto measured = data_mask(batch, shape, x.device());        // [Z, Y, X/2+1]
    auto input = wedge_apply(x, 1.0 - hide);
    auto pred = predict_full(input);                             // [B, 1, Z, Y, X]
    auto err = fourier_rfft3(pred - x);
    auto w = hide * measured;                                    // [B, 1, Z, Y, X/2+1]
    return (err.abs().pow(2) * w).sum() / w.sum().clamp_min(1.0);
  }

  torch::Tensor restore(const torch::Tensor& sub) override {
    torch::NoGradGuard ng;
    auto x = pad(sub);
    torch::Tensor out;
    if (mode_ == MaeMode::patch) {
      auto grid = net_->grid_of(x);
      const int64_t b = x.size(0), n = grid[0] * grid[1] * grid[2];
      const int64_t k = std::min(passes_, n);
      auto perm = torch::rand({b, n}, x.options()).argsort(int64_t(1));       // [B, N]
      auto group = torch::empty_like(perm).scatter_(
          1, perm, torch::arange(n, perm.options()).remainder(k).unsqueeze(0).expand({b, n}));
      torch::Tensor acc;
      for (int64_t g = 0; g < k; ++g) {
        auto hidden = (group == g).to(x.scalar_type());               // [B, N]
        const int64_t nk = n - hidden.sum(1).min().item<int64_t>();
        auto keep = visible_tokens(hidden, nk);
        auto pred = predict_patches(x, keep, hidden, grid);  // [B, N, p^3]
        pred = pred * hidden.unsqueeze(-1);
        acc = acc.defined() ? acc + pred : pred;
      }
      out = vit3d_unpatchify(acc, net_->options().patch(), grid);
    } else {
      std::array<int64_t, 3> shape{x.size(2), x.size(3), x.size(4)};
      auto m = wedge_cache_.mask(shape, default_geometry_, x.device());
      auto pred = predict_full(x);
      out = fourier_irfft3(fourier_rfft3(x) * m + fourier_rfft3(pred) * (1.0 - m), shape);
    }
    return out.narrow(2, 0, sub.size(2)).narrow(3, 0, sub.size(3)).narrow(4, 0, sub.size(4));
  }

  torch::Tensor embed(const torch::Tensor& sub) override {
    torch::NoGradGuard ng;
    if (unet_) throw ValueError("mae: net=unet has no token embedding (embed needs net=vit)");
    auto tokens = net_->encode(pad(sub));  // [B, T, dim]
    return concat_ ? tokens.flatten(1) : tokens.mean(1);  // [B, T * dim] or [B, dim]
  }
  void set_pool(const std::string& pool) override {
    if (pool != "mean" && pool != "concat") {
      throw ValueError("--pool " + pool + ": not mean or concat");
    }
    concat_ = pool == "concat";
  }
  int64_t embed_dim() const override { return net_->options().dim(); }

  std::vector<torch::Tensor> parameters() override {
    return unet_ ? unet_->parameters() : net_->parameters();
  }
  void train(bool on) override {
    net_->train(on);
    if (unet_) unet_->train(on);
  }
  void to(torch::Device device) override {
    net_->to(device);
    if (unet_) unet_->to(device);
  }
  void save(torch::serialize::OutputArchive& archive) const override {
    if (unet_) {
      method_net_save(*unet_, archive);
    } else {
      method_net_save(*net_, archive);
    }
  }
  void load(torch::serialize::InputArchive& archive) override {
    if (unet_) {
      method_net_load(name(), *unet_, archive);
    } else {
      method_net_load(name(), *net_, archive);
    }
  }
  nlohmann::json options_json() const override { return options_; }
  std::array<int64_t, 3> receptive_field() const override {
    if (unet_) return unet3d_receptive_field(unet_->options());
    const int64_t r = 4 * net_->options().patch();  // global attention: the whole tile
    return {r, r, r};
  }
  std::array<int64_t, 3> size_multiple() const override {
    const int64_t m = multiple();
    return {m, m, m};
  }

  ViT3d& net() { return net_; }
  // Decoder prediction for every patch from all tokens: [B, 1, Z, Y, X].
  torch::Tensor predict_full(const torch::Tensor& x) {
    if (unet_) {
      if (mode_ == MaeMode::wedge) return unet_->forward(x);
      return unet_->forward(torch::cat({x, torch::zeros_like(x)}, 1));
    }
    auto grid = net_->grid_of(x);
    auto pred = net_->decode(net_->encode(x), torch::Tensor(), grid);
    return vit3d_unpatchify(pred, net_->options().patch(), grid);
  }

  // Every patch of x [B, 1, Z, Y, X] predicted when the tokens `keep` [B, K] are visible and
  // `hidden` [B, N] (1 = hidden, the complement of keep) are not: [B, N, p^3]. The ViT's encoder
  // sees the visible tokens only; the U-Net sees the volume with hidden voxels zeroed (the
  // normalised mean) and the voxel mask as a second channel.
  torch::Tensor predict_patches(const torch::Tensor& x, const torch::Tensor& keep,
                                const torch::Tensor& hidden, std::array<int64_t, 3> grid) {
    const int64_t p = net_->options().patch();
    if (!unet_) return net_->decode(net_->encode(x, keep), keep, grid);
    const int64_t b = x.size(0), n = hidden.size(1);
    auto hv = vit3d_unpatchify(hidden.unsqueeze(-1).expand({b, n, p * p * p}).contiguous(), p,
                               grid);  // [B, 1, Z, Y, X]
    if (mode_ == MaeMode::wedge) return vit3d_patchify(unet_->forward(x * (1.0 - hv)), p);
    return vit3d_patchify(unet_->forward(torch::cat({x * (1.0 - hv), hv}, 1)), p);
  }

 private:
  // Edge multiple of the network's inputs: the patch, and with the U-Net also 2^depth.
  int64_t multiple() const {
    const int64_t p = net_->options().patch();
    if (!unet_) return p;
    return std::lcm(p, unet3d_size_multiple(unet_->options())[2]);
  }

  // U(lo, hi) from torch's default generator when lo > 0 (a per-batch draw), else hi.
  static double draw(double lo, double hi) {
    if (!(lo > 0) || lo >= hi) return hi;
    return lo + (hi - lo) * torch::rand({1}, torch::kDouble).item<double>();
  }

  // Pads [B, 1, Z, Y, X] at the far end (reflect) to multiples of the patch.
  torch::Tensor pad(const torch::Tensor& sub) const {
    if (sub.dim() != 5 || sub.size(1) != 1) {
      throw ShapeError("mae: input must be [B, 1, Z, Y, X], got " + c10::str(sub.sizes()));
    }
    const int64_t p = multiple();
    std::vector<int64_t> pads;
    bool any = false;
    for (int a = 4; a >= 2; --a) {
      const int64_t extra = (p - sub.size(a) % p) % p;
      if (extra >= sub.size(a)) {
        throw ShapeError("mae: size " + c10::str(sub.sizes()) + " is too small for patch " +
                         std::to_string(p));
      }
      pads.push_back(0);
      pads.push_back(extra);
      any = any || extra > 0;
    }
    if (!any) return sub;
    return torch::nn::functional::pad(
        sub, torch::nn::functional::PadFuncOptions(pads).mode(torch::kReflect));
  }

  // Per-sample hidden wedge (1 = hidden): a double wedge of width_ about a random axis.
  torch::Tensor wedge_hide_mask(int64_t b, std::array<int64_t, 3> shape, torch::Device device,
                                double width) {
    WedgeGeometry g;
    g.tilt_min_deg = -(90.0 - width / 2);
    g.tilt_max_deg = 90.0 - width / 2;
    auto R = random_rotations(b, at::globalContext().defaultGenerator(device), device);
    auto kept = wedge_mask_rfft_rotated(shape, g, R);  // [B, Z, Y, X/2+1]
    return (1.0 - kept).unsqueeze(1);
  }

  torch::Tensor data_mask(const Batch& batch, std::array<int64_t, 3> shape, torch::Device dev) {
    WedgeGeometry g = batch.wedge.empty() ? WedgeGeometry{} : to_geometry(batch.wedge[0]);
    return wedge_cache_.mask(shape, g, dev);
  }

  nlohmann::json options_;
  ViT3d net_{nullptr};
  UNet3d unet_{nullptr};  ///< net=unet: the network that predicts (net_ then only holds the patch)
  double ratio_ = 0.75;
  double ratio_min_ = 0;   ///< > 0: each batch hides U(ratio_min_, ratio_)
  bool per_sample_ = false;  ///< net=unet: each sample its own ratio (stratified)
  bool draw_low_ = false;    ///< per-sample ratios denser at the low end (ratio_draw=low)
  bool log_loss_ = false;    ///< per-sample losses averaged as log(MSE + 0.01) (sample_loss=log)
  double width_min_ = 0;   ///< > 0: each batch hides a wedge of width U(width_min_, width_)
  bool norm_pix_ = false;
  int64_t passes_ = 4;
  double width_ = 60;
  MaeMode mode_ = MaeMode::patch;
  WedgeGeometry default_geometry_;
  WedgeMaskCache wedge_cache_;
  bool concat_ = false;  ///< embed: concatenate the tokens instead of averaging them
};

Mae& as_mae(Method& m) {
  auto* p = dynamic_cast<Mae*>(&m);
  if (p == nullptr) throw ValueError("method " + m.name() + " is not mae");
  return *p;
}

}  // namespace

torch::Tensor mae_reconstruct_patches(Method& m, const torch::Tensor& x,
                                      const torch::Tensor& keep, bool flips) {
  torch::NoGradGuard ng;
  Mae& mae = as_mae(m);
  ViT3d& net = mae.net();
  auto grid = net->grid_of(x);
  const int64_t p = net->options().patch(), n = grid[0] * grid[1] * grid[2];
  auto visible = torch::zeros({x.size(0), n}, x.options()).scatter(1, keep, 1.0);  // [B, N]
  auto hidden_vox = vit3d_unpatchify((1.0 - visible).unsqueeze(-1).expand({x.size(0), n, p * p * p})
                                         .contiguous(), p, grid);                // [B, 1, Z, Y, X]
  torch::Tensor acc;
  const int64_t count = flips ? 8 : 1;
  for (int64_t f = 0; f < count; ++f) {
    std::vector<int64_t> dims;
    for (int64_t a = 0; a < 3; ++a) {
      if (f >> a & 1) dims.push_back(2 + a);
    }
    auto flip = [&](const torch::Tensor& t) { return dims.empty() ? t : t.flip(dims); };
    // The flipped volume hides the flipped patches (the grid maps onto itself: edges are
    // multiples of the patch).
    auto hidden_f = vit3d_patchify(flip(hidden_vox), p).amax(-1);  // [B, N]
    auto pred = mae.predict_patches(flip(x), visible_tokens(hidden_f, keep.size(1)), hidden_f,
                                    grid);  // [B, N, p^3]
    auto back = flip(vit3d_unpatchify(pred, p, grid));
    acc = acc.defined() ? acc + back : back;
  }
  return torch::lerp(acc / double(count), x, 1.0 - hidden_vox);
}

torch::Tensor mae_predict(Method& m, const torch::Tensor& x) {
  torch::NoGradGuard ng;
  return as_mae(m).predict_full(x);
}

int64_t mae_patch(Method& m) { return as_mae(m).net()->options().patch(); }

MethodInfo mae_method_info() {
  MethodInfo info;
  info.name = "mae";
  info.description =
      "3D masked autoencoder (ViT): hidden patches or a hidden Fourier wedge; restores and embeds";
  info.can.single = true;
  info.can.embedding = true;
  info.options = {
      {"mask_mode", "patch", "patch (hide random p^3 patches) | wedge (hide a Fourier wedge)"},
      {"mask_ratio", 0.75, "fraction of patches hidden (patch mode)"},
      {"mask_ratio_min", 0.0,
       "> 0: each batch hides a fraction drawn uniformly in [mask_ratio_min, mask_ratio]"},
      {"net", "vit", "vit (ViT encoder/decoder; embeds) | unet (3D U-Net inpainting the hidden "
                     "part from the masked volume and the mask; no embedding)"},
      {"ratio_per_sample", true,
       "net=unet with mask_ratio_min > 0: each sample of a batch draws its own ratio (stratified "
       "over the range; else one ratio per batch)"},
      {"ratio_draw", "low",
       "ratio_per_sample: uniform | low (ratio_min + (ratio - ratio_min) t^2, t stratified: "
       "denser where little is hidden)"},
      {"sample_loss", "log",
       "ratio_per_sample: mse (mean of the samples' MSEs) | log (mean of log(MSE + 0.01): each "
       "sample's relative improvement counts the same, small errors at low ratios included)"},
      {"unet_depth", int64_t(2), "net=unet: downsampling levels"},
      {"unet_channels", int64_t(16), "net=unet: channels at the finest level"},
      {"norm_pix", false, "per-patch normalised targets (patch mode)"},
      {"wedge_width_deg", 60.0, "width of the hidden double wedge, degrees (wedge mode)"},
      {"wedge_width_min_deg", 0.0,
       "> 0: each batch hides a wedge of width drawn in [wedge_width_min_deg, wedge_width_deg]"},
      {"restore_passes", int64_t(4), "restore: passes with disjoint hidden sets covering all"},
      {"patch", int64_t(8), "patch edge p, voxels (subtomogram edges: multiples of p)"},
      {"dim", int64_t(96), "encoder width (multiple of 6)"},
      {"depth", int64_t(4), "encoder transformer blocks"},
      {"heads", int64_t(4), "encoder attention heads"},
      {"decoder_dim", int64_t(48), "decoder width (multiple of 6)"},
      {"decoder_depth", int64_t(2), "decoder transformer blocks"},
      {"decoder_heads", int64_t(4), "decoder attention heads"},
  };
  info.create = [](const nlohmann::json& resolved) -> std::unique_ptr<Method> {
    return std::make_unique<Mae>(resolved);
  };
  return info;
}

}  // namespace unwedge
