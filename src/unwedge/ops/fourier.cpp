// Orthonormal 3D real FFTs, frequency grids, half-grid multiplicity and Hermitian half/full-grid
// conversion.
#include "unwedge/ops/fourier.h"

#include <vector>

#include <torch/torch.h>

#include "unwedge/core/error.h"

namespace unwedge {

namespace {

void check_shape(std::array<int64_t, 3> shape) {
  for (int64_t n : shape) {
    if (n < 1) {
      throw ShapeError("Fourier grid: shape [" + std::to_string(shape[0]) + ", " +
                       std::to_string(shape[1]) + ", " + std::to_string(shape[2]) +
                       "] has a non-positive dimension");
    }
  }
}

const std::vector<int64_t> kLast3{-3, -2, -1};

}  // namespace

at::Tensor fourier_rfft3(const at::Tensor& v) {
  if (v.dim() < 3) {
    throw ShapeError("fourier_rfft3: need [..., Z, Y, X], got " + std::to_string(v.dim()) +
                     " dims");
  }
  return torch::fft::rfftn(v, c10::nullopt, kLast3, "ortho");
}

at::Tensor fourier_irfft3(const at::Tensor& spec, std::array<int64_t, 3> shape) {
  if (spec.dim() < 3 || spec.size(-1) != shape[2] / 2 + 1) {
    throw ShapeError("fourier_irfft3: spectrum's last dim " +
                     std::to_string(spec.dim() ? spec.size(-1) : 0) + " is not X/2+1 = " +
                     std::to_string(shape[2] / 2 + 1) + " for X = " + std::to_string(shape[2]));
  }
  return torch::fft::irfftn(spec, std::vector<int64_t>{shape[0], shape[1], shape[2]}, kLast3,
                            "ortho");
}

at::Tensor fourier_half_multiplicity(int64_t nx, c10::Device device) {
  if (nx < 1) throw ShapeError("fourier_half_multiplicity: X = " + std::to_string(nx));
  const int64_t nh = nx / 2 + 1;
  auto m = torch::full({nh}, 2.0, torch::TensorOptions().dtype(torch::kFloat).device(device));
  m[0] = 1.0;
  if (nx % 2 == 0) m[nh - 1] = 1.0;  // the Nyquist column is its own mirror
  return m;
}

FreqGrid fourier_freq_rfft(std::array<int64_t, 3> shape, const c10::TensorOptions& opts) {
  check_shape(shape);
  auto o = opts.has_dtype() ? opts : opts.dtype(torch::kDouble);
  FreqGrid g;
  g.kz = torch::fft::fftfreq(shape[0], o).view({-1, 1, 1});   // [Z,1,1]
  g.ky = torch::fft::fftfreq(shape[1], o).view({1, -1, 1});   // [1,Y,1]
  g.kx = torch::fft::rfftfreq(shape[2], o).view({1, 1, -1});  // [1,1,X/2+1]
  return g;
}

FreqGrid fourier_freq_full(std::array<int64_t, 3> shape, const c10::TensorOptions& opts) {
  check_shape(shape);
  auto o = opts.has_dtype() ? opts : opts.dtype(torch::kDouble);
  FreqGrid g;
  g.kz = torch::fft::fftfreq(shape[0], o).view({-1, 1, 1});
  g.ky = torch::fft::fftfreq(shape[1], o).view({1, -1, 1});
  g.kx = torch::fft::fftfreq(shape[2], o).view({1, 1, -1});  // [1,1,X]
  return g;
}

at::Tensor fourier_half_to_full(const at::Tensor& half, int64_t nx) {
  if (half.dim() < 3 || half.size(-1) != nx / 2 + 1) {
    throw ShapeError("fourier_half_to_full: last dim " +
                     std::to_string(half.dim() ? half.size(-1) : 0) + " is not X/2+1 = " +
                     std::to_string(nx / 2 + 1) + " for X = " + std::to_string(nx));
  }
  int64_t nh = nx / 2 + 1;
  int64_t nrest = nx - nh;  // columns kx = -(nrest) .. -1 at indices nh .. nx-1
  if (nrest == 0) return half;
  // Column x >= nh is frequency x - nx; its partner -k sits at column nx - x (1 .. nrest),
  // with kz and ky negated: index -i mod n = flip then roll by 1.
  auto idx = torch::arange(nx - nh, 0, -1, half.options().dtype(torch::kLong));  // nx-x
  auto part = half.index_select(-1, idx);                                         // [...,Z,Y,nrest]
  part = part.flip({-3, -2}).roll({1, 1}, {-3, -2});
  return torch::cat({half, part}, -1);  // [..., Z, Y, X]
}

at::Tensor fourier_full_to_half(const at::Tensor& full) {
  return full.narrow(-1, 0, full.size(-1) / 2 + 1);
}

}  // namespace unwedge
