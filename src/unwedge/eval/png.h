// 8-bit PNG images (gray or RGB) through libpng, and the slice pictures the report shows:
// central slices on a common, percentile-clipped contrast and the log Fourier amplitude in the
// kx–kz plane, where the missing wedge shows.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace unwedge {

/// An 8-bit image, rows top to bottom, channels interleaved (1 = gray, 3 = RGB).
struct Image {
  int width = 0, height = 0, channels = 1;
  std::vector<uint8_t> pixels;  ///< width * height * channels bytes
};

/// Encodes an image as PNG bytes. Throws ValueError for an inconsistent image, IoError when
/// libpng fails.
std::vector<uint8_t> png_encode(const Image& img);
/// Decodes PNG bytes into an 8-bit image (gray stays gray, everything else becomes RGB).
Image png_decode(const std::vector<uint8_t>& bytes);
/// Writes an image as a PNG file, atomically. Throws ExistsError when `path` exists and
/// !overwrite.
void png_write(const std::string& path, const Image& img, bool overwrite);

/// Display window: values at or below `lo` are black, at or above `hi` white.
struct Contrast {
  double lo = 0.0, hi = 1.0;
};
/// The window [q_lo, q_hi] quantiles (in [0, 1]) of the values of `t` (any shape).
/// Quantiles are computed on a strided subsample of at most 2^20 values.
Contrast contrast_percentile(const at::Tensor& t, double q_lo = 0.005, double q_hi = 0.995);

/// A 2D tensor [rows, cols] as a gray image on `c`, each pixel repeated `zoom` times per axis.
Image image_from_slice(const at::Tensor& slice, const Contrast& c, int zoom = 1);
/// A 2D tensor in [0, 1] mapped through a perceptual colour map (viridis-like) as RGB.
Image image_from_slice_colormap(const at::Tensor& slice, const Contrast& c, int zoom = 1);

/// The three central slices of v [Z, Y, X]: XY (z = Z/2, [Y, X]), XZ (y = Y/2, [Z, X]) and
/// YZ (x = X/2, [Z, Y]).
struct CentralSlices {
  at::Tensor xy, xz, yz;
};
CentralSlices central_slices(const at::Tensor& v);

/// log(1 + |F v|) in the kx–kz plane (ky = 0) of the full 3D FFT, centred (DC in the middle):
/// [Z, X]. The missing wedge shows as a dark double wedge around the kz (vertical) axis.
at::Tensor fourier_xz_log_amplitude(const at::Tensor& v);

/// Grid of equally sized images with `gap` pixels of background `bg` between them, laid out
/// in `cols` columns (row-major). Images of different sizes are centred in cells of the largest.
Image image_montage(const std::vector<Image>& images, int cols, int gap = 4, uint8_t bg = 255);

}  // namespace unwedge
