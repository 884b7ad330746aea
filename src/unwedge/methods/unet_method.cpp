// UNetMethod: the shared body of single-UNet methods.
#include "unwedge/methods/unet_method.h"

#include "unwedge/core/error.h"

namespace unwedge {

std::vector<MethodOption> unet_method_options(const nlohmann::json& defaults) {
  nlohmann::json d = unet3d_options_to_json(UNet3dOptions{});
  for (const auto& [key, value] : defaults.items()) {
    if (!d.contains(key)) throw ValueError("unet_method_options: no network option '" + key + "'");
    d[key] = value;
  }
  return {
      {"depth", d["depth"], "U-Net levels; inputs are padded to multiples of 2^depth"},
      {"base_channels", d["base_channels"],
       "channels at the finest level, doubled per level (CPU 16; GPU 32-64)"},
      {"convs_per_level", d["convs_per_level"], "convolutions per U-Net level"},
      {"kernel_size", d["kernel_size"], "odd convolution kernel size in voxels"},
      {"downsample", d["downsample"], "pool | strided"},
      {"norm", d["norm"], "none | instance | group | batch"},
      {"norm_groups", d["norm_groups"], "groups of group normalisation"},
      {"activation", d["activation"], "relu | leaky_relu | gelu | silu"},
      {"dropout", d["dropout"], "dropout probability after each activation"},
      {"residual", d["residual"], "output = input + network(input)"},
      {"lowpass_skip", d["lowpass_skip"],
       "residual skip = learnable Gaussian low-pass of the input, initial sigma in cycles/voxel (0: identity)"},
      {"zero_head", d["zero_head"], "zero-initialise the last convolution (start as the skip path alone)"},
      {"planar", d["planar"],
       "2D network (kernels 1 x k x k, no Z downsampling), e.g. for tilt images [B,1,1,Y,X]"},
  };
}

namespace {

UNet3dOptions net_options_from(const nlohmann::json& resolved) {
  nlohmann::json net = nlohmann::json::object();
  for (const auto& key : unet3d_option_keys()) {
    if (resolved.contains(key)) net[key] = resolved.at(key);
  }
  return unet3d_options_from_json(net);
}

}  // namespace

UNetMethod::UNetMethod(const nlohmann::json& resolved)
    : options_(resolved), net_(net_options_from(resolved)) {}

torch::Tensor UNetMethod::forward_padded(const torch::Tensor& x) {
  std::array<int64_t, 3> pad{};
  auto xp = unet3d_pad_to_multiple(x, size_multiple(), &pad);  // [B, 1, Z', Y', X']
  return unet3d_crop(net_->forward(xp), pad);                    // [B, 1, Z, Y, X]
}

torch::Tensor UNetMethod::restore(const torch::Tensor& sub) {
  method_check_batch_tensor(name(), "restore input", sub);
  torch::NoGradGuard no_grad;
  return forward_padded(sub);
}

void UNetMethod::save(torch::serialize::OutputArchive& archive) const {
  torch::serialize::OutputArchive net;
  net_->save(net);
  archive.write("net", net);
}

void UNetMethod::load(torch::serialize::InputArchive& archive) {
  torch::serialize::InputArchive net;
  if (!archive.try_read("net", net)) {
    throw FormatError("method " + name() + ": saved state has no network ('net')");
  }
  net_->load(net);
}

void method_check_batch_tensor(const std::string& method, const std::string& what,
                               const torch::Tensor& t) {
  if (!t.defined()) throw ShapeError("method " + method + ": " + what + " is missing");
  if (t.dim() != 5 || t.size(1) != 1) {
    throw ShapeError("method " + method + ": " + what + " must be [B, 1, Z, Y, X], got " +
                     c10::str(t.sizes()));
  }
  if (!t.is_floating_point()) {
    throw ValueError("method " + method + ": " + what + " must be floating point, got " +
                     std::string(c10::toString(t.scalar_type())));
  }
}

torch::Tensor method_masked_mse(const torch::Tensor& a, const torch::Tensor& b,
                                const torch::Tensor& weight) {
  auto sq = (a - b).square();  // [B, 1, Z, Y, X]
  if (!weight.defined()) return sq.mean();
  auto w = weight.to(sq.dtype()).expand_as(sq);
  return (sq * w).sum() / w.sum().clamp_min(1e-12);
}

}  // namespace unwedge
