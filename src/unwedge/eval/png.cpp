#include "unwedge/eval/png.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <torch/torch.h>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"

namespace unwedge {

namespace {

void check_image(const Image& img) {
  if (img.width <= 0 || img.height <= 0 || (img.channels != 1 && img.channels != 3) ||
      img.pixels.size() != static_cast<size_t>(img.width) * img.height * img.channels) {
    throw ValueError("image " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                     "x" + std::to_string(img.channels) + " with " +
                     std::to_string(img.pixels.size()) + " bytes is not a valid gray/RGB image");
  }
}

// 2D slice -> uint8 [rows, cols] on the window, nearest-neighbour zoom.
at::Tensor to_u8(const at::Tensor& slice, const Contrast& c, int zoom) {
  if (slice.dim() != 2) throw ShapeError("image from slice: expected a 2D tensor");
  if (zoom < 1) throw ValueError("image zoom " + std::to_string(zoom) + " must be >= 1");
  double span = c.hi > c.lo ? c.hi - c.lo : 1.0;
  at::Tensor t = ((slice.to(torch::kDouble) - c.lo) / span).clamp(0.0, 1.0);
  t = torch::nan_to_num(t, 0.0);
  if (zoom > 1) t = t.repeat_interleave(zoom, 0).repeat_interleave(zoom, 1);
  return t;  // [rows, cols] in [0, 1]
}

Image image_from_unit(const at::Tensor& unit, int channels) {
  Image img;
  img.height = static_cast<int>(unit.size(0));
  img.width = static_cast<int>(unit.size(1));
  img.channels = channels;
  at::Tensor u8 = torch::round(unit * 255.0).to(torch::kUInt8).contiguous();
  img.pixels.assign(u8.data_ptr<uint8_t>(), u8.data_ptr<uint8_t>() + u8.numel());
  return img;
}

}  // namespace

std::vector<uint8_t> png_encode(const Image& img) {
  check_image(img);
  png_image pi{};
  pi.version = PNG_IMAGE_VERSION;
  pi.width = static_cast<png_uint_32>(img.width);
  pi.height = static_cast<png_uint_32>(img.height);
  pi.format = img.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  int stride = img.width * img.channels;
  if (!png_image_write_to_memory(&pi, nullptr, &size, 0, img.pixels.data(), stride, nullptr)) {
    throw IoError(std::string("PNG encoding failed: ") + pi.message);
  }
  std::vector<uint8_t> out(size);
  if (!png_image_write_to_memory(&pi, out.data(), &size, 0, img.pixels.data(), stride, nullptr)) {
    throw IoError(std::string("PNG encoding failed: ") + pi.message);
  }
  out.resize(size);
  return out;
}

Image png_decode(const std::vector<uint8_t>& bytes) {
  png_image pi{};
  pi.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&pi, bytes.data(), bytes.size())) {
    throw FormatError(std::string("PNG decoding failed: ") + pi.message);
  }
  Image img;
  img.channels = (pi.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1;
  pi.format = img.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  img.width = static_cast<int>(pi.width);
  img.height = static_cast<int>(pi.height);
  img.pixels.resize(PNG_IMAGE_SIZE(pi));
  if (!png_image_finish_read(&pi, nullptr, img.pixels.data(), 0, nullptr)) {
    throw FormatError(std::string("PNG decoding failed: ") + pi.message);
  }
  return img;
}

void png_write(const std::string& path, const Image& img, bool overwrite) {
  std::vector<uint8_t> bytes = png_encode(img);
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()), overwrite);
}

Contrast contrast_percentile(const at::Tensor& t, double q_lo, double q_hi) {
  if (!(q_lo >= 0 && q_lo < q_hi && q_hi <= 1)) {
    throw ValueError("contrast quantiles " + std::to_string(q_lo) + ", " + std::to_string(q_hi) +
                     " must satisfy 0 <= lo < hi <= 1");
  }
  at::Tensor flat = t.reshape({-1}).to(torch::kDouble);
  flat = flat.masked_select(torch::isfinite(flat));
  if (flat.numel() == 0) return {};
  int64_t step = std::max<int64_t>(1, flat.numel() >> 20);
  at::Tensor s = std::get<0>(flat.slice(0, 0, flat.numel(), step).sort());
  int64_t n = s.size(0);
  auto at_q = [&](double q) {
    return s[std::min<int64_t>(n - 1, static_cast<int64_t>(std::llround(q * (n - 1))))]
        .item<double>();
  };
  Contrast c{at_q(q_lo), at_q(q_hi)};
  if (!(c.hi > c.lo)) c.hi = c.lo + 1.0;
  return c;
}

Image image_from_slice(const at::Tensor& slice, const Contrast& c, int zoom) {
  return image_from_unit(to_u8(slice, c, zoom), 1);
}

Image image_from_slice_colormap(const at::Tensor& slice, const Contrast& c, int zoom) {
  at::Tensor u = to_u8(slice, c, zoom);  // [H, W]
  // Piecewise-linear approximation of viridis through 5 anchor colours.
  at::Tensor anchors = torch::tensor({68.0, 1.0, 84.0, 59.0, 82.0, 139.0, 33.0, 145.0, 140.0,
                                      94.0, 201.0, 98.0, 253.0, 231.0, 37.0},
                                     torch::kDouble).view({5, 3}) / 255.0;
  at::Tensor pos = u * 4.0;
  at::Tensor i0 = pos.floor().clamp(0, 3).to(torch::kLong);
  at::Tensor f = (pos - i0.to(torch::kDouble)).unsqueeze(-1);  // [H, W, 1]
  at::Tensor rgb = anchors.index({i0}) * (1 - f) + anchors.index({i0 + 1}) * f;  // [H, W, 3]
  Image img;
  img.height = static_cast<int>(u.size(0));
  img.width = static_cast<int>(u.size(1));
  img.channels = 3;
  at::Tensor u8 = torch::round(rgb * 255.0).to(torch::kUInt8).contiguous();
  img.pixels.assign(u8.data_ptr<uint8_t>(), u8.data_ptr<uint8_t>() + u8.numel());
  return img;
}

CentralSlices central_slices(const at::Tensor& v) {
  if (v.dim() != 3) throw ShapeError("central slices: expected a [Z, Y, X] volume");
  return {v.select(0, v.size(0) / 2), v.select(1, v.size(1) / 2), v.select(2, v.size(2) / 2)};
}

at::Tensor fourier_xz_log_amplitude(const at::Tensor& v) {
  if (v.dim() != 3) throw ShapeError("Fourier amplitude: expected a [Z, Y, X] volume");
  at::Tensor d = v.to(torch::kDouble);
  at::Tensor f = torch::fft::fftn(d - d.mean(), c10::nullopt, {-3, -2, -1}, "ortho");
  at::Tensor plane = f.select(1, 0);  // ky = 0: [Z, X]
  plane = torch::fft::fftshift(plane, {0, 1});
  return torch::log1p(plane.abs());
}

Image image_montage(const std::vector<Image>& images, int cols, int gap, uint8_t bg) {
  if (images.empty() || cols < 1) throw ValueError("montage: no images or cols < 1");
  int cw = 0, ch = 0, channels = 1;
  for (const Image& im : images) {
    check_image(im);
    cw = std::max(cw, im.width);
    ch = std::max(ch, im.height);
    channels = std::max(channels, im.channels);
  }
  int n = static_cast<int>(images.size());
  int rows = (n + cols - 1) / cols;
  int ncols = std::min(cols, n);
  int64_t W = ncols * cw + (ncols - 1) * gap, H = rows * ch + (rows - 1) * gap;
  at::Tensor canvas = torch::full({H, W, channels}, static_cast<int64_t>(bg), torch::kUInt8);
  for (int i = 0; i < n; ++i) {
    const Image& im = images[i];
    at::Tensor src = torch::from_blob(const_cast<uint8_t*>(im.pixels.data()),
                                      {im.height, im.width, im.channels}, torch::kUInt8)
                         .expand({im.height, im.width, channels});  // gray -> RGB if needed
    int64_t x0 = (i % cols) * (cw + gap) + (cw - im.width) / 2;
    int64_t y0 = (i / cols) * (ch + gap) + (ch - im.height) / 2;
    canvas.slice(0, y0, y0 + im.height).slice(1, x0, x0 + im.width).copy_(src);
  }
  Image out;
  out.width = static_cast<int>(W);
  out.height = static_cast<int>(H);
  out.channels = channels;
  out.pixels.assign(canvas.data_ptr<uint8_t>(), canvas.data_ptr<uint8_t>() + canvas.numel());
  return out;
}

}  // namespace unwedge
