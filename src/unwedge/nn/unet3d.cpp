// UNet3d: construction, forward, receptive field and padding helpers.
#include "unwedge/nn/unet3d.h"

#include <cmath>

#include <algorithm>
#include <utility>

#include "unwedge/core/error.h"

namespace unwedge {

namespace F = torch::nn::functional;

namespace {

template <typename E>
E parse_choice(const std::string& what, const std::string& s,
               const std::vector<std::pair<const char*, E>>& choices) {
  std::string known;
  for (const auto& c : choices) {
    if (s == c.first) return c.second;
    known += (known.empty() ? "" : ", ") + std::string(c.first);
  }
  throw ValueError("UNet3d: " + what + " '" + s + "' is not one of (" + known + ")");
}

const std::vector<std::pair<const char*, UNetDownsample>> kDownsample = {
    {"pool", UNetDownsample::pool}, {"strided", UNetDownsample::strided}};
const std::vector<std::pair<const char*, UNetNorm>> kNorm = {{"none", UNetNorm::none},
                                                             {"instance", UNetNorm::instance},
                                                             {"group", UNetNorm::group},
                                                             {"batch", UNetNorm::batch}};
const std::vector<std::pair<const char*, UNetActivation>> kActivation = {
    {"relu", UNetActivation::relu},
    {"leaky_relu", UNetActivation::leaky_relu},
    {"gelu", UNetActivation::gelu},
    {"silu", UNetActivation::silu}};

template <typename E>
std::string choice_name(E v, const std::vector<std::pair<const char*, E>>& choices) {
  for (const auto& c : choices) {
    if (c.second == v) return c.first;
  }
  return "?";
}

// Interval [lo, hi] of positions along one axis.
struct Span {
  int64_t lo, hi;
};
Span widen(Span s, int64_t h) { return {s.lo - h, s.hi + h}; }
int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Input span that the output span `s` of decoder level `l` depends on (exact for this
// architecture: same-padded convs widen by h per conv, a stride-2 transposed conv maps fine i to
// coarse floor(i / 2), a 2-wide stride-2 downsampling maps coarse j to fine 2j, 2j + 1).
Span back_through_level(Span s, int64_t l, int64_t depth, int64_t c, int64_t h, int64_t f) {
  if (l == depth) return widen(s, c * h);  // bottleneck convs
  Span dec_in = widen(s, c * h);           // decoder convs
  Span up_in{floor_div(dec_in.lo, f), floor_div(dec_in.hi, f)};
  Span deep = back_through_level(up_in, l + 1, depth, c, h, f);  // at down_l's output
  Span deep_fine{deep.lo * f, deep.hi * f + (f - 1)};
  Span merged{std::min(deep_fine.lo, dec_in.lo), std::max(deep_fine.hi, dec_in.hi)};
  return widen(merged, c * h);  // encoder convs
}

}  // namespace

UNetDownsample unet_downsample_parse(const std::string& s) {
  return parse_choice("downsample", s, kDownsample);
}
UNetNorm unet_norm_parse(const std::string& s) { return parse_choice("norm", s, kNorm); }
UNetActivation unet_activation_parse(const std::string& s) {
  return parse_choice("activation", s, kActivation);
}
std::string unet_downsample_name(UNetDownsample v) { return choice_name(v, kDownsample); }
std::string unet_norm_name(UNetNorm v) { return choice_name(v, kNorm); }
std::string unet_activation_name(UNetActivation v) { return choice_name(v, kActivation); }

nlohmann::json unet3d_options_to_json(const UNet3dOptions& o) {
  return {{"in_channels", o.in_channels()},
          {"out_channels", o.out_channels()},
          {"depth", o.depth()},
          {"base_channels", o.base_channels()},
          {"convs_per_level", o.convs_per_level()},
          {"kernel_size", o.kernel_size()},
          {"downsample", unet_downsample_name(o.downsample())},
          {"norm", unet_norm_name(o.norm())},
          {"norm_groups", o.norm_groups()},
          {"activation", unet_activation_name(o.activation())},
          {"dropout", o.dropout()},
          {"residual", o.residual()},
          {"lowpass_skip", o.lowpass_skip()},
          {"zero_head", o.zero_head()},
          {"latent_channels", o.latent_channels()},
          {"planar", o.planar()}};
}

std::vector<std::string> unet3d_option_keys() {
  std::vector<std::string> keys;
  const nlohmann::json defaults = unet3d_options_to_json(UNet3dOptions{});
  for (const auto& it : defaults.items()) keys.push_back(it.key());
  return keys;
}

UNet3dOptions unet3d_options_from_json(const nlohmann::json& j) {
  UNet3dOptions o;
  if (j.is_null()) return o;
  if (!j.is_object()) throw ValueError("UNet3d options: expected a JSON object, got " + j.dump());
  auto get = [&](const char* key, auto& field) {
    if (!j.contains(key)) return;
    try {
      j.at(key).get_to(field);
    } catch (const nlohmann::json::exception&) {
      throw ValueError(std::string("UNet3d option ") + key + ": bad value " + j.at(key).dump());
    }
  };
  int64_t i = 0;
  double d = 0;
  bool b = false;
  std::string s;
#define UNWEDGE_GET(key, var) \
  var = o.key();              \
  get(#key, var);             \
  o.key(var);
  UNWEDGE_GET(in_channels, i)
  UNWEDGE_GET(out_channels, i)
  UNWEDGE_GET(depth, i)
  UNWEDGE_GET(base_channels, i)
  UNWEDGE_GET(convs_per_level, i)
  UNWEDGE_GET(kernel_size, i)
  UNWEDGE_GET(norm_groups, i)
  UNWEDGE_GET(dropout, d)
  UNWEDGE_GET(residual, b)
  UNWEDGE_GET(lowpass_skip, d)
  UNWEDGE_GET(zero_head, b)
  UNWEDGE_GET(latent_channels, i)
  UNWEDGE_GET(planar, b)
#undef UNWEDGE_GET
  s = unet_downsample_name(o.downsample());
  get("downsample", s);
  o.downsample(unet_downsample_parse(s));
  s = unet_norm_name(o.norm());
  get("norm", s);
  o.norm(unet_norm_parse(s));
  s = unet_activation_name(o.activation());
  get("activation", s);
  o.activation(unet_activation_parse(s));
  unet3d_options_check(o);
  return o;
}

void unet3d_options_check(const UNet3dOptions& o) {
  auto bad = [](const std::string& what, double v, const std::string& rule) {
    throw ValueError("UNet3d: " + what + " = " + std::to_string(v) + " (" + rule + ")");
  };
  if (o.in_channels() < 1) bad("in_channels", o.in_channels(), "must be >= 1");
  if (o.out_channels() < 1) bad("out_channels", o.out_channels(), "must be >= 1");
  if (o.depth() < 1 || o.depth() > 6) bad("depth", o.depth(), "must be 1..6");
  if (o.base_channels() < 1) bad("base_channels", o.base_channels(), "must be >= 1");
  if (o.convs_per_level() < 1) bad("convs_per_level", o.convs_per_level(), "must be >= 1");
  if (o.kernel_size() < 1 || o.kernel_size() % 2 == 0) {
    bad("kernel_size", o.kernel_size(), "must be odd and >= 1");
  }
  if (o.norm_groups() < 1) bad("norm_groups", o.norm_groups(), "must be >= 1");
  if (o.dropout() < 0 || o.dropout() >= 1) bad("dropout", o.dropout(), "must be in [0, 1)");
  if (o.latent_channels() < 0) bad("latent_channels", o.latent_channels(), "must be >= 0");
  if (o.lowpass_skip() < 0) bad("lowpass_skip", o.lowpass_skip(), "must be >= 0 (0: identity skip)");
}

std::array<int64_t, 3> unet3d_receptive_field(const UNet3dOptions& o) {
  std::array<int64_t, 3> rf{};
  const int64_t levels = int64_t(1) << o.depth();
  for (int axis = 0; axis < 3; ++axis) {
    bool flat = o.planar() && axis == 0;
    int64_t h = flat ? 0 : (o.kernel_size() - 1) / 2;
    int64_t f = flat ? 1 : 2;
    int64_t widest = 1;
    // The span depends on the output position modulo 2^depth: take the widest.
    for (int64_t p = 0; p < levels; ++p) {
      int64_t at = (int64_t(1) << 30) + p;
      Span s = back_through_level({at, at}, 0, o.depth(), o.convs_per_level(), h, f);
      widest = std::max(widest, s.hi - s.lo + 1);
    }
    if (o.residual() && o.lowpass_skip() > 0 && o.in_channels() == o.out_channels() && !flat) {
      widest = std::max(widest, 2 * kLowpassSkipRadius + 1);  // the skip path's kernel
    }
    rf[axis] = widest;
  }
  return rf;
}

std::array<int64_t, 3> unet3d_size_multiple(const UNet3dOptions& o) {
  int64_t m = int64_t(1) << o.depth();
  return {o.planar() ? 1 : m, m, m};
}

std::vector<int64_t> unet3d_padded_shape(at::IntArrayRef sizes, std::array<int64_t, 3> multiple) {
  if (sizes.size() < 3) {
    throw ShapeError("unet3d_padded_shape: need [..., Z, Y, X], got " + c10::str(sizes));
  }
  std::vector<int64_t> s = sizes.vec();
  for (int a = 0; a < 3; ++a) {
    int64_t& n = s[s.size() - 3 + size_t(a)];
    n = (n + multiple[a] - 1) / multiple[a] * multiple[a];
  }
  return s;
}

torch::Tensor unet3d_pad_to_multiple(const torch::Tensor& x, std::array<int64_t, 3> multiple,
                                     std::array<int64_t, 3>* pad) {
  if (x.dim() < 3) throw ShapeError("unet3d_pad_to_multiple: need [..., Z, Y, X], got " +
                                    std::to_string(x.dim()) + " dimensions");
  std::array<int64_t, 3> p{};
  bool reflect_ok = true;
  for (int a = 0; a < 3; ++a) {
    int64_t n = x.size(x.dim() - 3 + a);
    p[a] = (multiple[a] - n % multiple[a]) % multiple[a];
    if (p[a] >= n) reflect_ok = false;
  }
  if (pad) *pad = p;
  if (p[0] == 0 && p[1] == 0 && p[2] == 0) return x;
  auto shape = x.sizes().vec();
  auto x5 = x.reshape({-1, 1, shape[shape.size() - 3], shape[shape.size() - 2], shape.back()});
  F::PadFuncOptions opts({0, p[2], 0, p[1], 0, p[0]});
  if (reflect_ok) {
    opts.mode(torch::kReflect);
  } else {
    opts.mode(torch::kReplicate);
  }
  auto y = F::pad(x5, opts);
  for (int a = 0; a < 3; ++a) shape[shape.size() - 3 + a] += p[a];
  return y.reshape(shape);
}

torch::Tensor unet3d_crop(const torch::Tensor& x, std::array<int64_t, 3> pad) {
  int64_t d = x.dim();
  return x.narrow(d - 3, 0, x.size(d - 3) - pad[0])
      .narrow(d - 2, 0, x.size(d - 2) - pad[1])
      .narrow(d - 1, 0, x.size(d - 1) - pad[2]);
}

namespace {

/// The skip's filter along one axis of length n as an [n, n] matrix, out = M in:
/// M[i, j] = Σ_t w[t + r] over the taps t in [-r, r] whose padded position i + t falls on j
/// (F::pad's "reflect" when n > r, "replicate" otherwise, as a pad-then-convolve would).
/// Built from w [2r+1] with index_add, so it is differentiable in w.
torch::Tensor lowpass_axis_matrix(const torch::Tensor& w, int64_t n) {
  const int64_t r = kLowpassSkipRadius;
  auto lo = w.options().dtype(torch::kLong);
  auto j = torch::arange(n, lo).view({n, 1}) + torch::arange(-r, r + 1, lo).view({1, 2 * r + 1});
  if (n > r) {
    j = torch::where(j < 0, -j, j);                  // reflect at 0 (edge not repeated)
    j = torch::where(j > n - 1, 2 * (n - 1) - j, j);  // and at n - 1
  } else {
    j = j.clamp(0, n - 1);
  }
  auto flat = (torch::arange(n, lo).view({n, 1}) * n + j).reshape(-1);  // [n (2r+1)] into [n n]
  return torch::zeros({n * n}, w.options()).index_add(0, flat, w.repeat({n})).view({n, n});
}

}  // namespace

torch::Tensor unet3d_lowpass_skip(const torch::Tensor& x, const torch::Tensor& log_sigma_k) {
  // One matrix product per axis with the banded [n, n] filter matrix: the same sums as padding
  // and a depthwise 1D convolution, ~10x less CPU time in training (LibTorch 1.13's weight
  // gradient of a one-channel convolution is slow; bench/RESULTS.md "Efficiency").
  const int64_t r = kLowpassSkipRadius;
  auto sigma_s = torch::exp(-log_sigma_k.to(torch::kFloat)) / (2.0 * M_PI);  // voxels [3]
  auto t = torch::arange(-r, r + 1, x.options().dtype(torch::kFloat));       // [2r+1]
  auto h = x.to(torch::kFloat).contiguous();                                 // [B, C, Z, Y, X]
  const auto shape = h.sizes().vec();
  for (int a = 0; a < 3; ++a) {
    const int64_t n = h.size(2 + a);
    if (n == 1) continue;  // planar inputs: nothing to smooth along Z
    auto w = torch::exp(-0.5 * (t / sigma_s[a]).square());
    w = w / w.sum();                             // [2r+1], sum 1: the DC passes unchanged
    auto m = lowpass_axis_matrix(w, n);          // [n, n]
    if (a == 0) {
      h = torch::matmul(m, h.reshape({shape[0] * shape[1], n, -1})).view(shape);  // Z
    } else if (a == 1) {
      h = torch::matmul(m, h);  // Y: [n, n] x [B, C, Z, Y, X] batched over B, C, Z
    } else {
      h = torch::matmul(h, m.t());  // X
    }
  }
  return h.to(x.scalar_type());
}

UNet3dImpl::UNet3dImpl(const UNet3dOptions& options) : options_(options) {
  unet3d_options_check(options_);
  const int64_t depth = options_.depth();
  const int64_t base = options_.base_channels();
  auto width = [&](int64_t l) { return base << l; };
  std::vector<int64_t> stride = {options_.planar() ? 1 : 2, 2, 2};
  for (int64_t l = 0; l < depth; ++l) {
    int64_t in_ch = l == 0 ? options_.in_channels() : width(l - 1);
    enc_.push_back(register_module("enc" + std::to_string(l), make_block(in_ch, width(l))));
    torch::nn::Sequential down;
    if (options_.downsample() == UNetDownsample::pool) {
      down->push_back(torch::nn::MaxPool3d(torch::nn::MaxPool3dOptions(stride).stride(stride)));
    } else {
      down->push_back(torch::nn::Conv3d(
          torch::nn::Conv3dOptions(width(l), width(l), stride).stride(stride)));
    }
    down_.push_back(register_module("down" + std::to_string(l), down));
  }
  bottleneck_ = register_module(
      "bottleneck",
      make_block(width(depth - 1) + options_.latent_channels(), width(depth)));
  up_.resize(depth, torch::nn::ConvTranspose3d(nullptr));
  dec_.resize(depth, torch::nn::Sequential(nullptr));
  for (int64_t l = depth - 1; l >= 0; --l) {
    up_[l] = register_module(
        "up" + std::to_string(l),
        torch::nn::ConvTranspose3d(
            torch::nn::ConvTranspose3dOptions(width(l + 1), width(l), stride).stride(stride)));
    dec_[l] = register_module("dec" + std::to_string(l), make_block(2 * width(l), width(l)));
  }
  head_ = register_module(
      "head", torch::nn::Conv3d(torch::nn::Conv3dOptions(base, options_.out_channels(), 1)));
  if (options_.zero_head()) {
    torch::NoGradGuard no_grad;
    head_->weight.zero_();
    if (head_->bias.defined()) head_->bias.zero_();
  }
  if (options_.lowpass_skip() > 0 && options_.residual() &&
      options_.in_channels() == options_.out_channels()) {
    skip_log_sigma_ = register_parameter(
        "skip_log_sigma", torch::full({3}, std::log(options_.lowpass_skip())));
  }
}

torch::nn::Sequential UNet3dImpl::make_block(int64_t in_ch, int64_t out_ch) {
  const int64_t k = options_.kernel_size();
  std::vector<int64_t> kernel = {options_.planar() ? 1 : k, k, k};
  std::vector<int64_t> padding = {options_.planar() ? 0 : k / 2, k / 2, k / 2};
  torch::nn::Sequential block;
  for (int64_t i = 0; i < options_.convs_per_level(); ++i) {
    int64_t ci = i == 0 ? in_ch : out_ch;
    block->push_back(torch::nn::Conv3d(torch::nn::Conv3dOptions(ci, out_ch, kernel)
                                           .padding(padding)
                                           .bias(options_.norm() == UNetNorm::none)));
    switch (options_.norm()) {
      case UNetNorm::none: break;
      case UNetNorm::instance:
        block->push_back(torch::nn::InstanceNorm3d(
            torch::nn::InstanceNorm3dOptions(out_ch).affine(true)));
        break;
      case UNetNorm::group: {
        int64_t g = std::min(options_.norm_groups(), out_ch);
        while (out_ch % g != 0) --g;
        block->push_back(torch::nn::GroupNorm(torch::nn::GroupNormOptions(g, out_ch)));
        break;
      }
      case UNetNorm::batch:
        block->push_back(torch::nn::BatchNorm3d(out_ch));
        break;
    }
    switch (options_.activation()) {
      case UNetActivation::relu: block->push_back(torch::nn::ReLU()); break;
      case UNetActivation::leaky_relu:
        block->push_back(torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.1)));
        break;
      case UNetActivation::gelu: block->push_back(torch::nn::GELU()); break;
      case UNetActivation::silu: block->push_back(torch::nn::SiLU()); break;
    }
    if (options_.dropout() > 0) block->push_back(torch::nn::Dropout(options_.dropout()));
  }
  return block;
}

std::vector<int64_t> UNet3dImpl::latent_shape(torch::IntArrayRef x_shape) const {
  auto m = unet3d_size_multiple(options_);
  return {x_shape[0], options_.latent_channels(), x_shape[2] / m[0], x_shape[3] / m[1],
          x_shape[4] / m[2]};
}

torch::Tensor UNet3dImpl::forward(const torch::Tensor& x, const torch::Tensor& z) {
  if (x.dim() != 5 || x.size(1) != options_.in_channels()) {
    throw ShapeError("UNet3d: input must be [B, " + std::to_string(options_.in_channels()) +
                     ", Z, Y, X], got " + c10::str(x.sizes()));
  }
  auto m = unet3d_size_multiple(options_);
  for (int a = 0; a < 3; ++a) {
    if (x.size(2 + a) % m[a] != 0) {
      throw ShapeError("UNet3d: input " + c10::str(x.sizes()) + " is not divisible by " +
                       std::to_string(m[a]) + " along " + "ZYX"[a] +
                       " (pad with unet3d_pad_to_multiple)");
    }
  }
  std::vector<torch::Tensor> skips;
  torch::Tensor h = x;  // [B, C, Z, Y, X]
  for (size_t l = 0; l < enc_.size(); ++l) {
    h = enc_[l]->forward(h);  // [B, base*2^l, Z/2^l, ...]
    skips.push_back(h);
    h = down_[l]->forward(h);  // [B, base*2^l, Z/2^(l+1), ...]
  }
  if (options_.latent_channels() > 0) {
    auto shape = latent_shape(x.sizes());
    torch::Tensor noise = z.defined() ? z : torch::randn(shape, x.options());
    if (noise.sizes().vec() != shape) {
      throw ShapeError("UNet3d: latent noise must be " + c10::str(torch::IntArrayRef(shape)) +
                       ", got " + c10::str(noise.sizes()));
    }
    h = torch::cat({h, noise}, 1);  // [B, C + latent, ...]
  }
  h = bottleneck_->forward(h);  // [B, base*2^depth, ...]
  for (int64_t l = int64_t(up_.size()) - 1; l >= 0; --l) {
    h = up_[l]->forward(h);                            // [B, base*2^l, Z/2^l, ...]
    h = dec_[l]->forward(torch::cat({h, skips[l]}, 1));  // [B, base*2^l, Z/2^l, ...]
  }
  h = head_->forward(h);  // [B, out_channels, Z, Y, X]
  if (options_.residual() && options_.in_channels() == options_.out_channels()) {
    h = h + (skip_log_sigma_.defined() ? unet3d_lowpass_skip(x, skip_log_sigma_) : x);
  }
  return h;
}

}  // namespace unwedge
