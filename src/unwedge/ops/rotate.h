// Rotations of volumes: the 24 exact rotations of the cube (index permutations and flips, no
// interpolation), Haar-uniform random rotations of SO(3), trilinear resampling about the volume
// centre, and the same rotation applied to a Fourier mask.
//
// Coordinates: a rotation matrix R [3,3] acts on column vectors (x, y, z) in voxel units,
// centred on the volume centre ((n-1)/2 along each axis). Rotating a volume by R means
// out(p) = in(R^T p): what sat at p moves to R p. Its spectrum rotates the same way:
// F[out](k) = F[in](R^T k).
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include "unwedge/ops/wedge.h"

namespace unwedge {

/// One of the 24 rotations of the cube acting on the last three dims [..., Z, Y, X].
/// Output dim i (0 = Z, 1 = Y, 2 = X) is input dim perm[i], reversed when flip[i].
struct CubeRotation {
  std::array<int, 3> perm{0, 1, 2};
  std::array<bool, 3> flip{false, false, false};

  /// The matrix R [3,3] (float64, acting on (x, y, z)) with out(p) = in(R^T p).
  at::Tensor matrix() const;
  /// Short name, e.g. "z<-x' y<-y x<-z" style: "perm=(2,1,0) flip=(1,0,0)".
  std::string name() const;
  bool operator==(const CubeRotation& o) const { return perm == o.perm && flip == o.flip; }
  bool operator!=(const CubeRotation& o) const { return !(*this == o); }
};

/// All 24 proper rotations (det +1), identity first.
const std::vector<CubeRotation>& cube_rotations();
/// The 4 rotations about the Y (tilt) axis by 0°, 90°, 180°, 270°.
/// Note: 90° and 270° swap kx and kz, so they turn a wedge about kz into one about kx;
/// only 0° and 180° keep the wedge fixed (see cube_rotations_keeping_wedge).
std::vector<CubeRotation> cube_rotations_about_y();
/// The rotations that map the measured region of `g` onto itself: {I, 180° about Y} for any
/// range, plus 180° about X and about Z when the range is symmetric; all 24 for ±90°.
std::vector<CubeRotation> cube_rotations_keeping_wedge(const WedgeGeometry& g);
/// The flips of [..., Z, Y, X] (dims from the end: -3 Z, -2 Y, -1 X) that keep any missing wedge
/// about Y, symmetric or not: none; Y; Z with X (a half turn about Y); all three. The identity
/// first; with it they form a group, each its own inverse. (A Y mirror and a half turn about Y
/// map every tilt direction onto itself; Z or X alone would mirror an asymmetric range.)
const std::vector<std::vector<int64_t>>& wedge_keeping_flips();
/// v flipped along `dims` (v itself when dims is empty).
at::Tensor flip_dims(const at::Tensor& v, const std::vector<int64_t>& dims);
/// The rotations that keep the shape [Z, Y, X] (permute only axes of equal length).
std::vector<CubeRotation> cube_rotations_preserving(std::array<int64_t, 3> shape);

/// Applies r to v [..., Z, Y, X] (exact; the shape is permuted as the axes are).
at::Tensor cube_rotate(const at::Tensor& v, const CubeRotation& r);
/// compose(a, b) = "b first, then a": cube_rotate(v, compose(a,b)) == cube_rotate(cube_rotate(v,b),a).
CubeRotation cube_compose(const CubeRotation& a, const CubeRotation& b);
/// The inverse: cube_compose(cube_inverse(r), r) is the identity.
CubeRotation cube_inverse(const CubeRotation& r);
/// The group element whose matrix equals R (entries within 1e-6 of a signed permutation, det +1);
/// throws ValueError otherwise.
CubeRotation cube_from_matrix(const at::Tensor& R);

/// Rotation matrices [N,3,3] from quaternions q [N,4] (w, x, y, z); q need not be normalised.
at::Tensor quaternion_to_matrix(const at::Tensor& q);
/// N Haar-uniform random rotations [N,3,3] (float32 on `device` unless dtype given): unit
/// quaternions drawn uniformly on S^3 (normalised 4D Gaussians) from `gen` (seeded by caller).
at::Tensor random_rotations(int64_t n, at::Generator gen, c10::Device device,
                            c10::ScalarType dtype = c10::kFloat);
/// Rotation by `angle_deg` about an axis "x", "y" or "z" (float64 [3,3]), right-handed.
at::Tensor rotation_about(const std::string& axis, double angle_deg);

/// Resamples batch [B, C, Z, Y, X] rotated by R [B,3,3] (or [3,3] for all) about the volume
/// centre: out(p) = in(R^T p). order 1 = trilinear, 0 = nearest. Outside the input is 0.
/// Runs on the batch's device (torch grid_sample, align_corners = true, voxel centres at
/// integer indices; grid's last dim is ordered (x, y, z) as grid_sample expects).
at::Tensor rotate_volume(const at::Tensor& batch, const at::Tensor& R, int order = 1);

/// Rotates a Fourier-space weight given on the rfft half-grid [Z, Y, X/2+1] (or
/// [B, Z, Y, X/2+1]) of a [Z, Y, X] volume by R ([3,3] or [B,3,3]) about the zero frequency:
/// out(k) = in(R^T k), k in cycles/voxel, trilinear on the full grid, 0 outside.
/// Returns [B, Z, Y, X/2+1] (B = 1 for a single R and mask). `nx` is the full X.
at::Tensor rotate_mask_rfft(const at::Tensor& mask_half, int64_t nx, const at::Tensor& R);

}  // namespace unwedge
