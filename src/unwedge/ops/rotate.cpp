// Cube group, random rotations and trilinear resampling of volumes and Fourier masks.
#include "unwedge/ops/rotate.h"

#include <algorithm>
#include <cmath>

#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/ops/fourier.h"

namespace unwedge {

namespace {

using Mat3i = std::array<std::array<int, 3>, 3>;

/// Matrix in the dim basis (z, y, x): c_out = M c_in, M[i][perm[i]] = +-1.
Mat3i dim_matrix(const CubeRotation& r) {
  Mat3i m{};
  for (int i = 0; i < 3; ++i) m[i][r.perm[i]] = r.flip[i] ? -1 : 1;
  return m;
}

CubeRotation from_dim_matrix(const Mat3i& m) {
  CubeRotation r;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      if (m[i][j] != 0) {
        r.perm[i] = j;
        r.flip[i] = m[i][j] < 0;
      }
    }
  }
  return r;
}

Mat3i mul(const Mat3i& a, const Mat3i& b) {
  Mat3i c{};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 3; ++k) c[i][j] += a[i][k] * b[k][j];
  return c;
}

int det(const Mat3i& m) {
  return m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
         m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
         m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
}

/// Centred voxel coordinates (x, y, z) of every voxel of a [Z, Y, X] grid: [Z, Y, X, 3].
at::Tensor centred_coords(int64_t Z, int64_t Y, int64_t X, const at::TensorOptions& o) {
  auto z = torch::arange(Z, o) - (Z - 1) / 2.0;
  auto y = torch::arange(Y, o) - (Y - 1) / 2.0;
  auto x = torch::arange(X, o) - (X - 1) / 2.0;
  auto g = torch::meshgrid({z, y, x}, "ij");
  return torch::stack({g[2], g[1], g[0]}, -1);  // [Z, Y, X, 3] as (x, y, z)
}

at::Tensor as_batch_matrices(const at::Tensor& R, const char* what) {
  if (!((R.dim() == 2 || R.dim() == 3) && R.size(-1) == 3 && R.size(-2) == 3)) {
    throw ShapeError(std::string(what) + ": R must be [3,3] or [B,3,3], got " +
                     std::to_string(R.dim()) + " dims");
  }
  return R.dim() == 2 ? R.unsqueeze(0) : R;
}

}  // namespace

at::Tensor CubeRotation::matrix() const {
  Mat3i m = dim_matrix(*this);
  auto out = torch::zeros({3, 3}, torch::kDouble);
  auto a = out.accessor<double, 2>();
  // (x, y, z) axis a is dim 2 - a.
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) a[i][j] = m[2 - i][2 - j];
  return out;
}

std::string CubeRotation::name() const {
  std::string s = "perm=(";
  for (int i = 0; i < 3; ++i) s += std::to_string(perm[i]) + (i < 2 ? "," : ")");
  s += " flip=(";
  for (int i = 0; i < 3; ++i) s += std::string(flip[i] ? "1" : "0") + (i < 2 ? "," : ")");
  return s;
}

const std::vector<CubeRotation>& cube_rotations() {
  static const std::vector<CubeRotation> all = [] {
    std::vector<CubeRotation> v;
    std::array<int, 3> p{0, 1, 2};
    do {
      for (int f = 0; f < 8; ++f) {
        CubeRotation r;
        r.perm = p;
        r.flip = {bool(f & 4), bool(f & 2), bool(f & 1)};
        if (det(dim_matrix(r)) == 1) v.push_back(r);
      }
    } while (std::next_permutation(p.begin(), p.end()));
    return v;
  }();
  return all;
}

std::vector<CubeRotation> cube_rotations_about_y() {
  // 0°, 90°, 180°, 270° about Y: (x, z) -> (z, -x) style swaps of dims 0 and 2.
  std::vector<CubeRotation> v;
  for (int k = 0; k < 4; ++k) {
    auto R = rotation_about("y", 90.0 * k);
    v.push_back(cube_from_matrix(R));
  }
  return v;
}

std::vector<CubeRotation> cube_rotations_keeping_wedge(const WedgeGeometry& g) {
  wedge_check(g);
  double a = g.sign_flip ? -g.tilt_max_deg : g.tilt_min_deg;
  double b = g.sign_flip ? -g.tilt_min_deg : g.tilt_max_deg;
  bool full = a <= -90.0 && b >= 90.0;
  bool symmetric = std::abs(a + b) < 1e-9;
  std::vector<CubeRotation> v;
  for (const auto& r : cube_rotations()) {
    if (full) {
      v.push_back(r);
      continue;
    }
    // Y must stay the Y axis, X and Z must not swap.
    if (r.perm[1] != 1 || r.perm[0] != 0) continue;
    // Signs of kz and kx: equal signs keep phi, opposite signs mirror it (phi -> -phi).
    bool mirror = r.flip[0] != r.flip[2];
    if (!mirror || symmetric) v.push_back(r);
  }
  return v;
}

std::vector<CubeRotation> cube_rotations_preserving(std::array<int64_t, 3> shape) {
  std::vector<CubeRotation> v;
  for (const auto& r : cube_rotations()) {
    bool ok = true;
    for (int i = 0; i < 3; ++i) ok = ok && shape[i] == shape[r.perm[i]];
    if (ok) v.push_back(r);
  }
  return v;
}

const std::vector<std::vector<int64_t>>& wedge_keeping_flips() {
  static const std::vector<std::vector<int64_t>> f{{}, {-2}, {-3, -1}, {-3, -2, -1}};
  return f;
}

at::Tensor flip_dims(const at::Tensor& v, const std::vector<int64_t>& dims) {
  return dims.empty() ? v : v.flip(dims);
}

at::Tensor cube_rotate(const at::Tensor& v, const CubeRotation& r) {
  if (v.dim() < 3) {
    throw ShapeError("cube_rotate: tensor has " + std::to_string(v.dim()) +
                     " dims, needs [..., Z, Y, X]");
  }
  int64_t off = v.dim() - 3;
  std::vector<int64_t> order(v.dim());
  for (int64_t i = 0; i < off; ++i) order[i] = i;
  for (int i = 0; i < 3; ++i) order[off + i] = off + r.perm[i];
  auto out = v.permute(order);
  std::vector<int64_t> fl;
  for (int i = 0; i < 3; ++i)
    if (r.flip[i]) fl.push_back(off + i);
  if (!fl.empty()) out = out.flip(fl);
  return out.contiguous();
}

CubeRotation cube_compose(const CubeRotation& a, const CubeRotation& b) {
  return from_dim_matrix(mul(dim_matrix(a), dim_matrix(b)));
}

CubeRotation cube_inverse(const CubeRotation& r) {
  Mat3i m = dim_matrix(r), t{};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) t[i][j] = m[j][i];
  return from_dim_matrix(t);
}

CubeRotation cube_from_matrix(const at::Tensor& R) {
  if (R.dim() != 2 || R.size(0) != 3 || R.size(1) != 3) {
    throw ShapeError("cube_from_matrix: R must be [3,3]");
  }
  auto Rd = R.to(torch::kCPU, torch::kDouble).contiguous();
  auto a = Rd.accessor<double, 2>();
  Mat3i m{};
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      double val = a[2 - i][2 - j];  // to the dim basis
      int rounded = static_cast<int>(std::lround(val));
      if (std::abs(val - rounded) > 1e-6 || std::abs(rounded) > 1) {
        throw ValueError("cube_from_matrix: entry (" + std::to_string(2 - i) + "," +
                         std::to_string(2 - j) + ") = " + std::to_string(val) +
                         " is not 0 or +-1");
      }
      m[i][j] = rounded;
    }
  }
  for (int i = 0; i < 3; ++i) {
    int nz = std::abs(m[i][0]) + std::abs(m[i][1]) + std::abs(m[i][2]);
    int nzc = std::abs(m[0][i]) + std::abs(m[1][i]) + std::abs(m[2][i]);
    if (nz != 1 || nzc != 1) throw ValueError("cube_from_matrix: not a signed permutation");
  }
  if (det(m) != 1) throw ValueError("cube_from_matrix: determinant is -1 (a reflection)");
  return from_dim_matrix(m);
}

at::Tensor quaternion_to_matrix(const at::Tensor& q) {
  if (q.dim() != 2 || q.size(1) != 4) {
    throw ShapeError("quaternion_to_matrix: q must be [N,4] (w, x, y, z)");
  }
  auto u = q / q.norm(2, 1, /*keepdim=*/true);
  auto w = u.select(1, 0), x = u.select(1, 1), y = u.select(1, 2), z = u.select(1, 3);
  auto r00 = 1 - 2 * (y * y + z * z), r01 = 2 * (x * y - z * w), r02 = 2 * (x * z + y * w);
  auto r10 = 2 * (x * y + z * w), r11 = 1 - 2 * (x * x + z * z), r12 = 2 * (y * z - x * w);
  auto r20 = 2 * (x * z - y * w), r21 = 2 * (y * z + x * w), r22 = 1 - 2 * (x * x + y * y);
  return torch::stack({r00, r01, r02, r10, r11, r12, r20, r21, r22}, 1).view({-1, 3, 3});
}

at::Tensor random_rotations(int64_t n, at::Generator gen, c10::Device device,
                            c10::ScalarType dtype) {
  if (n < 0) throw ValueError("random_rotations: n = " + std::to_string(n) + " < 0");
  // Normalised 4D Gaussians are uniform on S^3, i.e. Haar-uniform rotations.
  auto q = at::randn({n, 4}, gen, torch::TensorOptions().dtype(torch::kDouble).device(gen.device()));
  return quaternion_to_matrix(q).to(device, dtype);
}

at::Tensor rotation_about(const std::string& axis, double angle_deg) {
  double t = angle_deg * M_PI / 180.0, c = std::cos(t), s = std::sin(t);
  // Snap to exact values for multiples of 90° so cube rotations come out exact.
  auto snap = [](double v) { return std::abs(v) < 1e-12 ? 0.0 : v; };
  c = snap(c);
  s = snap(s);
  auto R = torch::eye(3, torch::kDouble);
  auto a = R.accessor<double, 2>();
  int i, j;  // the rotated plane, right-handed: (i, j) -> (c, -s; s, c)
  if (axis == "x") {
    i = 1, j = 2;
  } else if (axis == "y") {
    i = 2, j = 0;
  } else if (axis == "z") {
    i = 0, j = 1;
  } else {
    throw ValueError("rotation_about: axis '" + axis + "' is not x, y or z");
  }
  a[i][i] = c, a[i][j] = -s, a[j][i] = s, a[j][j] = c;
  return R;
}

at::Tensor rotate_volume(const at::Tensor& batch, const at::Tensor& R, int order) {
  if (batch.dim() != 5) {
    throw ShapeError("rotate_volume: batch must be [B, C, Z, Y, X], got " +
                     std::to_string(batch.dim()) + " dims");
  }
  if (order != 0 && order != 1) {
    throw ValueError("rotate_volume: order " + std::to_string(order) +
                     " is not 0 (nearest) or 1 (trilinear)");
  }
  int64_t B = batch.size(0), Z = batch.size(2), Y = batch.size(3), X = batch.size(4);
  auto Rb = as_batch_matrices(R, "rotate_volume").to(batch.device(), batch.scalar_type());
  if (Rb.size(0) != B && Rb.size(0) != 1) {
    throw ShapeError("rotate_volume: " + std::to_string(Rb.size(0)) + " rotations for a batch of " +
                     std::to_string(B));
  }
  auto p = centred_coords(Z, Y, X, batch.options()).view({1, -1, 3});  // [1, N, 3]
  auto src = torch::matmul(p, Rb);                                       // R^T p: [B', N, 3]
  // Voxel units -> grid_sample's [-1, 1] with align_corners (voxel centres at +-1 on the ends).
  auto half = torch::tensor({std::max<double>((X - 1) / 2.0, 0.5), std::max<double>((Y - 1) / 2.0, 0.5),
                             std::max<double>((Z - 1) / 2.0, 0.5)},
                            batch.options());
  auto grid = (src / half).view({-1, Z, Y, X, 3}).expand({B, Z, Y, X, 3});  // [B, Z, Y, X, 3]
  return at::grid_sampler(batch, grid, /*interpolation_mode=*/order == 1 ? 0 : 1,
                          /*padding_mode=*/0, /*align_corners=*/true);
}

at::Tensor rotate_mask_rfft(const at::Tensor& mask_half, int64_t nx, const at::Tensor& R) {
  if (mask_half.dim() != 3 && mask_half.dim() != 4) {
    throw ShapeError("rotate_mask_rfft: mask must be [Z, Y, X/2+1] or [B, Z, Y, X/2+1]");
  }
  auto m = mask_half.dim() == 3 ? mask_half.unsqueeze(0) : mask_half;  // [Bm, Z, Y, Xh]
  auto Rb = as_batch_matrices(R, "rotate_mask_rfft").to(m.device(), torch::kFloat);
  int64_t Z = m.size(1), Y = m.size(2), Xh = m.size(3);
  int64_t B = std::max(m.size(0), Rb.size(0));
  auto full = fourier_half_to_full(m.to(torch::kFloat), nx);   // [Bm, Z, Y, X]
  full = torch::fft::fftshift(full, std::vector<int64_t>{-3, -2, -1});  // zero at n/2
  auto f = fourier_freq_rfft({Z, Y, nx}, m.options().dtype(torch::kFloat));
  auto k = torch::stack({f.kx.expand({Z, Y, Xh}), f.ky.expand({Z, Y, Xh}), f.kz.expand({Z, Y, Xh})},
                        -1)
               .view({1, -1, 3});                 // [1, N, 3] as (x, y, z)
  auto src = torch::matmul(k, Rb);                // R^T k: [Br, N, 3]
  auto n = torch::tensor({double(nx), double(Y), double(Z)}, src.options());
  auto centre = torch::tensor({double(nx / 2), double(Y / 2), double(Z / 2)}, src.options());
  auto idx = src * n + centre;                    // index in the shifted full grid
  auto grid = idx / ((n - 1).clamp_min(1.0) / 2.0) - 1.0;
  grid = grid.view({-1, Z, Y, Xh, 3}).expand({B, Z, Y, Xh, 3});
  auto in = full.unsqueeze(1).expand({B, 1, Z, Y, nx});  // [B, 1, Z, Y, X]
  auto out = at::grid_sampler(in.contiguous(), grid.contiguous(), /*interpolation_mode=*/0,
                              /*padding_mode=*/0, /*align_corners=*/true);  // [B,1,Z,Y,Xh]
  return out.squeeze(1);
}

}  // namespace unwedge
