// UNet3d: the 3D U-Net every restoration method trains (or uses as its generator).
//
//   encoder level l = 0..depth-1 : convs_per_level x [conv k^3 -> norm -> act (-> dropout)]
//                                  at width base_channels * 2^l, then downsample by 2
//   bottleneck                   : [concat latent noise z] -> convs at width base * 2^depth
//   decoder level l = depth-1..0 : transposed conv 2^3 stride 2, concat skip, convs
//   head                         : 1^3 conv to out_channels; output = input + head (residual)
//
// Inputs are [B, in_channels, Z, Y, X] with Z, Y, X divisible by unet3d_size_multiple(opts)
// (2^depth; along Z only 1 when `planar`). `forward` throws ShapeError otherwise;
// unet3d_pad_to_multiple / unet3d_crop pad (reflect) and crop back for arbitrary sizes.
//
// Defaults are sized for a laptop CPU (depth 3, 16 base channels: ~1.4 M parameters). On a GPU
// scale up with base_channels 32..64 and depth 4 (subtomograms of 64^3 or more).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace unwedge {

/// How an encoder level halves the resolution.
enum class UNetDownsample { pool, strided };
/// Normalisation after each convolution.
enum class UNetNorm { none, instance, group, batch };
/// Nonlinearity after each normalisation.
enum class UNetActivation { relu, leaky_relu, gelu, silu };

/// Parse/print the enums ("pool", "strided"; "none", "instance", "group", "batch";
/// "relu", "leaky_relu", "gelu", "silu"). Parsing throws ValueError listing the choices.
UNetDownsample unet_downsample_parse(const std::string& s);
UNetNorm unet_norm_parse(const std::string& s);
UNetActivation unet_activation_parse(const std::string& s);
std::string unet_downsample_name(UNetDownsample v);
std::string unet_norm_name(UNetNorm v);
std::string unet_activation_name(UNetActivation v);

struct UNet3dOptions {
  /// Channels of the input volume.
  TORCH_ARG(int64_t, in_channels) = 1;
  /// Channels of the output volume.
  TORCH_ARG(int64_t, out_channels) = 1;
  /// Number of downsampling levels (inputs must be divisible by 2^depth).
  TORCH_ARG(int64_t, depth) = 3;
  /// Feature channels at the finest level; doubled at every level below.
  TORCH_ARG(int64_t, base_channels) = 16;
  /// Convolutions per level (encoder, bottleneck and decoder alike).
  TORCH_ARG(int64_t, convs_per_level) = 2;
  /// Odd convolution kernel size (voxels); zero "same" padding.
  TORCH_ARG(int64_t, kernel_size) = 3;
  /// Max-pooling 2^3 or a strided 2^3 convolution between levels.
  TORCH_ARG(UNetDownsample, downsample) = UNetDownsample::pool;
  /// Normalisation after each convolution.
  TORCH_ARG(UNetNorm, norm) = UNetNorm::none;
  /// Groups of group normalisation (reduced to a divisor of the channel count).
  TORCH_ARG(int64_t, norm_groups) = 8;
  /// Nonlinearity after each convolution (leaky_relu uses slope 0.1).
  TORCH_ARG(UNetActivation, activation) = UNetActivation::leaky_relu;
  /// Dropout probability after each activation (0 = off).
  TORCH_ARG(double, dropout) = 0.0;
  /// Output = input + network(input) when in_channels == out_channels.
  TORCH_ARG(bool, residual) = true;
  /// With residual: the skip path is a learnable Gaussian low-pass of the input (one width per
  /// axis, initialised to this sigma in cycles/voxel) instead of the identity; 0 = identity.
  /// The network then starts as a smoother and learns the rest (noisy data on a small budget).
  TORCH_ARG(double, lowpass_skip) = 0.0;
  /// Zero-initialise the last (1³) convolution, so that a residual network starts as exactly its
  /// skip path (identity or low-pass) and learns only what it adds.
  TORCH_ARG(bool, zero_head) = false;
  /// Latent-noise channels concatenated at the bottleneck (stochastic generators; 0 = none).
  TORCH_ARG(int64_t, latent_channels) = 0;
  /// 2D network inside the 3D layout: kernels 1 x k x k, down/upsampling only in Y and X, so
  /// [B, C, 1, Y, X] tilt images (or any Z) pass through untouched along Z.
  TORCH_ARG(bool, planar) = false;
};

/// Options as JSON (flat keys named like the fields; enums as strings) and back. `from_json`
/// starts from the defaults, reads only the keys it knows, and throws ValueError on a bad value.
nlohmann::json unet3d_options_to_json(const UNet3dOptions& o);
UNet3dOptions unet3d_options_from_json(const nlohmann::json& j);
/// The JSON keys unet3d_options_from_json reads.
std::vector<std::string> unet3d_option_keys();
/// Throws ValueError when an option is out of range (depth < 1, even kernel, ...).
void unet3d_options_check(const UNet3dOptions& o);

/// Receptive field along Z, Y, X in voxels: the full width of the input region that one
/// output voxel can depend on (1 + sum over the deepest path of (kernel - 1) * stride
/// product). Along Z it is 1 when `planar`. Tiled restoration needs an overlap of at least
/// half of this on each side for tile outputs to equal whole-volume outputs.
std::array<int64_t, 3> unet3d_receptive_field(const UNet3dOptions& o);
/// The factor Z, Y, X must be divisible by: 2^depth (Z: 1 when `planar`).
std::array<int64_t, 3> unet3d_size_multiple(const UNet3dOptions& o);

/// The shape `sizes` [..., Z, Y, X] with Z, Y, X rounded up to the next multiple: the shape
/// unet3d_pad_to_multiple gives.
std::vector<int64_t> unet3d_padded_shape(at::IntArrayRef sizes, std::array<int64_t, 3> multiple);
/// Pads [..., Z, Y, X] at the high end of each axis up to the next multiple (reflect where
/// the axis is long enough, else replicate). `pad` receives the amounts added (z, y, x).
torch::Tensor unet3d_pad_to_multiple(const torch::Tensor& x, std::array<int64_t, 3> multiple,
                                     std::array<int64_t, 3>* pad);
/// Removes the padding unet3d_pad_to_multiple added.
torch::Tensor unet3d_crop(const torch::Tensor& x, std::array<int64_t, 3> pad);

/// Half-width (voxels) of the low-pass skip's separable kernel (UNet3dOptions::lowpass_skip).
constexpr int64_t kLowpassSkipRadius = 8;

/// The low-pass skip: x [B, C, Z, Y, X] smoothed along each axis by a normalised Gaussian of
/// width 1/(2π σ_a) voxels, σ_a = exp(log_sigma_k[a]) cycles/voxel (a = z, y, x), truncated at
/// ±kLowpassSkipRadius voxels, reflect-padded (a local filter: tiles agree with a whole-volume
/// pass). Differentiable in x and log_sigma_k.
torch::Tensor unet3d_lowpass_skip(const torch::Tensor& x, const torch::Tensor& log_sigma_k);

class UNet3dImpl : public torch::nn::Module {
 public:
  explicit UNet3dImpl(const UNet3dOptions& options = {});

  /// x: [B, in_channels, Z, Y, X] (sizes divisible by unet3d_size_multiple).
  /// z: latent noise [B, latent_channels, Z/2^d, Y/2^d, X/2^d]; drawn from N(0, 1) with
  /// torch's default generator when undefined and latent_channels > 0; ignored otherwise.
  /// Returns [B, out_channels, Z, Y, X].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& z = {});

  /// Shape of the latent noise forward expects for an input shaped `x_shape`.
  std::vector<int64_t> latent_shape(torch::IntArrayRef x_shape) const;

  const UNet3dOptions& options() const { return options_; }

 private:
  torch::nn::Sequential make_block(int64_t in_ch, int64_t out_ch);

  UNet3dOptions options_;
  std::vector<torch::nn::Sequential> enc_;       // per level
  std::vector<torch::nn::Sequential> down_;      // per level: max-pool or strided conv
  torch::nn::Sequential bottleneck_{nullptr};
  std::vector<torch::nn::ConvTranspose3d> up_;   // per level
  std::vector<torch::nn::Sequential> dec_;       // per level
  torch::nn::Conv3d head_{nullptr};
  torch::Tensor skip_log_sigma_;  // [3] (z, y, x) log sigma of the low-pass skip, cycles/voxel
};
TORCH_MODULE(UNet3d);

}  // namespace unwedge
