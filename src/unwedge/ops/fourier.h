// Fourier helpers shared by masks, filters, methods and metrics: the orthonormal real FFT over
// the last three dims, frequency grids on the rfft half-grid, the Hermitian multiplicity of
// half-grid columns, and the Hermitian expansion of a half-grid array to the full grid.
// Layout: torch::fft::rfftn over the last 3 dims of [..., Z, Y, X] gives [..., Z, Y, X/2+1];
// index i along a full axis of length n is frequency (i < (n+1)/2 ? i : i - n) / n cycles/voxel.
#pragma once
#include <array>
#include <cstdint>

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

namespace unwedge {

/// Orthonormal real FFT over the last three dims: [..., Z, Y, X] -> complex [..., Z, Y, X/2+1]
/// (torch::fft::rfftn, norm "ortho": Parseval holds with the half-grid multiplicity below).
at::Tensor fourier_rfft3(const at::Tensor& v);

/// Its inverse: a half-grid spectrum [..., Z, Y, X/2+1] -> real [..., Z, Y, X] of `shape`
/// (the full last dim X is not implied by X/2+1).
at::Tensor fourier_irfft3(const at::Tensor& spec, std::array<int64_t, 3> shape);

/// Hermitian multiplicity of the rfft half-grid columns for a full last dim `nx`: float [X/2+1]
/// on `device`, 1 for kx = 0 (and kx = X/2 when nx is even, its own mirror), else 2. A sum over
/// the full grid of a Hermitian-symmetric quantity is the half-grid sum weighted by it.
at::Tensor fourier_half_multiplicity(int64_t nx, c10::Device device);

/// Frequencies in cycles/voxel of the rfft half-grid of a [Z, Y, X] volume, as three
/// broadcastable tensors: kz [Z,1,1], ky [1,Y,1], kx [1,1,X/2+1] (float64 unless `opts` says).
struct FreqGrid {
  at::Tensor kz, ky, kx;
};
FreqGrid fourier_freq_rfft(std::array<int64_t, 3> shape, const c10::TensorOptions& opts);

/// Same frequencies on the full grid (unshifted FFT order): kx is [1,1,X].
FreqGrid fourier_freq_full(std::array<int64_t, 3> shape, const c10::TensorOptions& opts);

/// Expands a real half-grid array h [..., Z, Y, X/2+1] of a real-signal spectrum property
/// (a mask, a weight) to the full grid [..., Z, Y, X] using h(-k) = h(k) (Hermitian symmetry
/// of real weights). `nx` is the full last dimension X.
at::Tensor fourier_half_to_full(const at::Tensor& half, int64_t nx);

/// Keeps the half-grid part [..., Z, Y, X/2+1] of a full-grid array [..., Z, Y, X].
at::Tensor fourier_full_to_half(const at::Tensor& full);

}  // namespace unwedge
