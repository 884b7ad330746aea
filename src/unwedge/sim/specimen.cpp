// Specimen: objects placed by rejection sampling on bounding shapes, written as tensor ops on
// sub-boxes (particles, beads, vesicles) or broadcast grids (filaments).
#include "unwedge/sim/specimen.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/ops/fourier.h"
#include "unwedge/ops/rotate.h"

namespace unwedge {

namespace {

/// What already occupies space, for overlap tests (voxel units).
struct Occupancy {
  struct Sphere { double x, y, z, r; };
  struct Shell { double x, y, z, r, half; };  // vesicle membrane: |d - r| < half
  struct Tube { double cx, cy, cz, ux, uy, uz, r; };
  std::vector<Sphere> spheres;
  std::vector<Shell> shells;
  std::vector<Tube> tubes;

  bool free(double x, double y, double z, double r) const {
    for (const auto& s : spheres)
      if (std::hypot(x - s.x, y - s.y, z - s.z) < r + s.r) return false;
    for (const auto& s : shells)
      if (std::abs(std::hypot(x - s.x, y - s.y, z - s.z) - s.r) < r + s.half) return false;
    for (const auto& t : tubes) {
      double vx = x - t.cx, vy = y - t.cy, vz = z - t.cz;
      double s = vx * t.ux + vy * t.uy + vz * t.uz;
      if (std::hypot(vx - s * t.ux, vy - s * t.uy, vz - s * t.uz) < r + t.r) return false;
    }
    return true;
  }
};


/// 0.5 (1 - tanh((d - R) / w)): 1 inside, 0 outside, edge width w.
at::Tensor soft_inside(const at::Tensor& d, double R, double w) {
  return 0.5 * (1.0 - torch::tanh((d - R) / w));
}

/// Adds `src` [a, b, c] into `dst` [Z, Y, X] with its corner at (z0, y0, x0), clipped.
/// (Views by narrow(), not a std::vector<TensorIndex>: moving a TensorIndex copies its
/// uninitialized bool member, undefined behaviour that UBSan reports in LibTorch's header.)
void add_box(at::Tensor& dst, const at::Tensor& src, int64_t z0, int64_t y0, int64_t x0) {
  const int64_t o[3] = {z0, y0, x0};
  at::Tensor dv = dst, sv = src;
  for (int d = 0; d < 3; ++d) {
    int64_t a = std::max<int64_t>(0, o[d]), b = std::min<int64_t>(dst.size(d), o[d] + src.size(d));
    if (b <= a) return;
    dv = dv.narrow(d, a, b - a);
    sv = sv.narrow(d, a - o[d], b - a);
  }
  dv.add_(sv);
}

/// Distances (voxels) from (cx, cy, cz) over a cubic box of side m whose corner is (z0, y0, x0).
at::Tensor box_distance(int64_t m, int64_t z0, int64_t y0, int64_t x0, double cx, double cy,
                        double cz) {
  auto f = torch::kFloat32;
  at::Tensor z = torch::arange(m, f).add(z0 - cz).view({-1, 1, 1});
  at::Tensor y = torch::arange(m, f).add(y0 - cy).view({1, -1, 1});
  at::Tensor x = torch::arange(m, f).add(x0 - cx).view({1, 1, -1});
  return (z * z + y * y + x * x).sqrt();  // [m, m, m]
}

}  // namespace

at::Tensor bilayer_profile(const at::Tensor& r_A, double radius_A, const BilayerProfile& p) {
  auto g = [&](double c, double s) { return torch::exp(-(r_A - c).pow(2) / (2.0 * s * s)); };
  return p.head * (g(radius_A - p.separation_A / 2, p.head_sigma_A) +
                   g(radius_A + p.separation_A / 2, p.head_sigma_A)) -
         p.tail * g(radius_A, p.tail_sigma_A);
}

std::array<double, 4> rotation_to_quaternion(const at::Tensor& Rt) {
  at::Tensor R = Rt.to(torch::kFloat64).contiguous().cpu();
  auto a = R.accessor<double, 2>();
  double w, x, y, z, tr = a[0][0] + a[1][1] + a[2][2];
  if (tr > 0) {
    double s = std::sqrt(tr + 1.0) * 2;
    w = 0.25 * s; x = (a[2][1] - a[1][2]) / s; y = (a[0][2] - a[2][0]) / s; z = (a[1][0] - a[0][1]) / s;
  } else if (a[0][0] > a[1][1] && a[0][0] > a[2][2]) {
    double s = std::sqrt(1.0 + a[0][0] - a[1][1] - a[2][2]) * 2;
    w = (a[2][1] - a[1][2]) / s; x = 0.25 * s; y = (a[0][1] + a[1][0]) / s; z = (a[0][2] + a[2][0]) / s;
  } else if (a[1][1] > a[2][2]) {
    double s = std::sqrt(1.0 + a[1][1] - a[0][0] - a[2][2]) * 2;
    w = (a[0][2] - a[2][0]) / s; x = (a[0][1] + a[1][0]) / s; y = 0.25 * s; z = (a[1][2] + a[2][1]) / s;
  } else {
    double s = std::sqrt(1.0 + a[2][2] - a[0][0] - a[1][1]) * 2;
    w = (a[1][0] - a[0][1]) / s; x = (a[0][2] + a[2][0]) / s; y = (a[1][2] + a[2][1]) / s; z = 0.25 * s;
  }
  double n = std::sqrt(w * w + x * x + y * y + z * z);
  double sg = w < 0 ? -1.0 : 1.0;
  return {sg * w / n, sg * x / n, sg * y / n, sg * z / n};
}

void specimen_check(const SpecimenParams& p) {
  const int64_t Z = p.shape[0], Y = p.shape[1], X = p.shape[2];
  if (Z < 4 || Y < 4 || X < 4) {
    throw ValueError("specimen: shape " + std::to_string(X) + "x" + std::to_string(Y) + "x" +
                     std::to_string(Z) + " (X x Y x Z) is too small (each side >= 4 voxels)");
  }
  auto num = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return std::string(buf);
  };
  if (!(p.voxel_A > 0) || !std::isfinite(p.voxel_A)) {
    throw ValueError("specimen: voxel size " + num(p.voxel_A) + " A must be > 0");
  }
  if (!(p.thickness_A > 0)) throw ValueError("specimen: thickness " + num(p.thickness_A) + " A must be > 0");
}

Specimen specimen_make(const SpecimenParams& p, const std::vector<SimTemplate>& templates) {
  specimen_check(p);
  const int64_t Z = p.shape[0], Y = p.shape[1], X = p.shape[2];
  if (p.n_particles > 0 && templates.empty()) throw ValueError("specimen: particles requested but no templates given");
  const double vs = p.voxel_A;
  double T = p.thickness_A / vs;  // slab thickness in voxels
  if (T > Z) {
    log_warn("specimen: slab thickness {} A exceeds the box ({} voxels); clipped", p.thickness_A, Z);
    T = (double)Z;
  }
  const double zc = (Z - 1) / 2.0, z_lo = zc - T / 2.0 + 0.5, z_hi = zc + T / 2.0 - 0.5;
  const double edge = 0.5;  // soft edge width, voxels

  std::mt19937_64 rng(p.seed * 0x9E3779B97F4A7C15ULL + 1);
  std::uniform_real_distribution<double> U(0.0, 1.0);
  at::Generator tgen = at::make_generator<at::CPUGeneratorImpl>(p.seed + 12345);
  Specimen out;
  at::Tensor vol = torch::zeros({Z, Y, X}, torch::kFloat32);
  Occupancy occ;

  // A random centre keeping a sphere of radius r inside the slab (z) and the box (x, y).
  auto draw_centre = [&](double r, double& x, double& y, double& z) {
    if (z_hi - z_lo < 2 * r || X - 1 < 2 * r || Y - 1 < 2 * r) return false;
    x = r + U(rng) * (X - 1 - 2 * r);
    y = r + U(rng) * (Y - 1 - 2 * r);
    z = z_lo + r + U(rng) * (z_hi - z_lo - 2 * r);
    return true;
  };
  const int kTries = 200;

  // Gold beads: dense soft-edged spheres.
  for (int i = 0; i < p.n_gold; ++i) {
    double R = p.gold_radius_A / vs, x, y, z;
    for (int t = 0; t < kTries; ++t) {
      if (!draw_centre(R + 1, x, y, z) || !occ.free(x, y, z, R + 1)) continue;
      int64_t m = (int64_t)std::ceil(2 * R + 4), x0 = std::lround(x - m / 2.0),
              y0 = std::lround(y - m / 2.0), z0 = std::lround(z - m / 2.0);
      at::Tensor d = box_distance(m, z0, y0, x0, x, y, z);
      add_box(vol, p.gold_density * soft_inside(d, R, edge), z0, y0, x0);
      occ.spheres.push_back({x, y, z, R + 1});
      ++out.n_gold;
      break;
    }
  }

  // Vesicles: bilayer shells, radius drawn in the given range and clipped to fit the slab.
  BilayerProfile bp;
  bp.head_sigma_A = std::max(bp.head_sigma_A, 0.5 * vs);
  bp.tail_sigma_A = std::max(bp.tail_sigma_A, 0.6 * vs);
  const double shell_half = (bp.separation_A / 2 + 2.5 * bp.head_sigma_A) / vs;
  for (int i = 0; i < p.n_vesicles; ++i) {
    for (int t = 0; t < kTries; ++t) {
      double Rmax = std::min(p.vesicle_radius_max_A / vs, (z_hi - z_lo) / 2 - shell_half);
      double Rmin = p.vesicle_radius_min_A / vs;
      if (Rmax < Rmin || Rmax < shell_half + 1) break;
      double R = Rmin + U(rng) * (Rmax - Rmin), x, y, z;
      if (!draw_centre(R + shell_half, x, y, z) || !occ.free(x, y, z, R + shell_half)) continue;
      int64_t m = (int64_t)std::ceil(2 * (R + shell_half) + 4), x0 = std::lround(x - m / 2.0),
              y0 = std::lround(y - m / 2.0), z0 = std::lround(z - m / 2.0);
      at::Tensor d = box_distance(m, z0, y0, x0, x, y, z) * vs;  // Å
      add_box(vol, bilayer_profile(d, R * vs, bp), z0, y0, x0);
      occ.shells.push_back({x, y, z, R, shell_half});
      ++out.n_vesicles;
      break;
    }
  }

  // Filaments: straight tubes lying nearly flat in the slab, crossing the box.
  auto place_filament = [&](double r_out, double r_in, double repeat_A, int n_pf) {
    for (int t = 0; t < kTries; ++t) {
      double cx = U(rng) * (X - 1), cy = U(rng) * (Y - 1), cz;
      if (z_hi - z_lo < 2 * (r_out + 1)) return false;
      cz = z_lo + r_out + 1 + U(rng) * (z_hi - z_lo - 2 * (r_out + 1));
      double az = U(rng) * 2 * M_PI;
      double ux = std::cos(az), uy = std::sin(az), uz = 0.0;
      // Reject if it would cut through something already placed (sample points along it).
      bool ok = true;
      double L = std::hypot((double)X, (double)Y);
      for (double s = -L; s <= L && ok; s += 1.0) {
        double px = cx + s * ux, py = cy + s * uy;
        if (px < -r_out || px > X + r_out || py < -r_out || py > Y + r_out) continue;
        ok = occ.free(px, py, cz, r_out + 1);
      }
      if (!ok) continue;
      auto f = torch::kFloat32;
      at::Tensor gz = torch::arange(Z, f).sub(cz).view({-1, 1, 1});
      at::Tensor gy = torch::arange(Y, f).sub(cy).view({1, -1, 1});
      at::Tensor gx = torch::arange(X, f).sub(cx).view({1, 1, -1});
      at::Tensor s = gx * ux + gy * uy;              // along the axis, [1, Y, X]
      at::Tensor e1 = gx * (-uy) + gy * ux;           // in-plane perpendicular, [1, Y, X]
      at::Tensor d = (e1 * e1 + gz * gz).sqrt();      // [Z, Y, X]
      at::Tensor body = soft_inside(d, r_out, edge);
      if (r_in > 0) body = body - soft_inside(d, r_in, edge);
      // Subunit texture: axial repeat, and protofilaments around the circumference.
      at::Tensor tex = 1.0 + 0.25 * torch::cos(s * (2 * M_PI * vs / repeat_A));
      if (n_pf > 0) tex = tex * (1.0 + 0.25 * torch::cos(n_pf * torch::atan2(gz, e1)));
      vol.add_(body * tex);
      occ.tubes.push_back({cx, cy, cz, ux, uy, uz, r_out + 1});
      return true;
    }
    return false;
  };
  for (int i = 0; i < p.n_microtubules; ++i)
    out.n_microtubules += place_filament(125.0 / vs, 85.0 / vs, 80.0, 13);
  for (int i = 0; i < p.n_actin; ++i) out.n_actin += place_filament(35.0 / vs, 0.0, 55.0, 0);

  // Particles: random class, Haar-uniform orientation, no overlap of bounding spheres.
  for (const auto& t : templates) out.class_names.push_back(t.name);
  for (int i = 0; i < p.n_particles; ++i) {
    // A class and a position per try: classes too big for the slab give way to smaller ones.
    int cls = 0;
    double r = 0, x = 0, y = 0, z = 0;
    bool placed = false;
    for (int t = 0; t < kTries && !placed; ++t) {
      cls = (int)(U(rng) * templates.size()) % (int)templates.size();
      r = templates[cls].radius_vox;
      placed = draw_centre(r, x, y, z) && occ.free(x, y, z, r);
    }
    if (!placed) continue;
    const SimTemplate& tp = templates[cls];
    // Pad the template to a cube holding its bounding sphere, rotate, add at the centre.
    int64_t n = tp.density.size(0);
    int64_t pad = std::max<int64_t>(0, (int64_t)std::ceil(r - (n - 1) / 2.0));
    at::Tensor cube = torch::constant_pad_nd(tp.density, {pad, pad, pad, pad, pad, pad}, 0);
    int64_t m = cube.size(0);
    at::Tensor R = random_rotations(1, tgen, torch::kCPU, torch::kFloat32);  // [1, 3, 3]
    at::Tensor rot = rotate_volume(cube.view({1, 1, m, m, m}), R, /*order=*/1).view({m, m, m});
    int64_t x0 = std::lround(x - (m - 1) / 2.0), y0 = std::lround(y - (m - 1) / 2.0),
            z0 = std::lround(z - (m - 1) / 2.0);
    add_box(vol, rot, z0, y0, x0);
    SimParticle sp;
    sp.class_name = tp.name;
    sp.class_id = cls;
    sp.centre_xyz = {x0 + (m - 1) / 2.0, y0 + (m - 1) / 2.0, z0 + (m - 1) / 2.0};
    sp.quat_wxyz = rotation_to_quaternion(R[0]);
    sp.radius_vox = r;
    occ.spheres.push_back({sp.centre_xyz[0], sp.centre_xyz[1], sp.centre_xyz[2], r});
    out.particles.push_back(sp);
  }
  if ((int)out.particles.size() < p.n_particles) {
    log_warn("specimen: placed {} of {} particles (no room for more without overlap)",
             out.particles.size(), p.n_particles);
  }

  // Amorphous ice: weak low-pass Gaussian texture inside the slab (soft edges).
  at::Tensor slab = soft_inside((torch::arange(Z, torch::kFloat32) - zc).abs(), T / 2.0, edge)
                        .view({-1, 1, 1});  // [Z, 1, 1]
  if (p.ice_noise > 0) {
    at::Tensor n = torch::randn({Z, Y, X}, tgen, torch::kFloat32);
    double sigma = p.ice_noise_scale_A / vs;
    FreqGrid k = fourier_freq_rfft({Z, Y, X}, torch::TensorOptions().dtype(torch::kFloat64));
    at::Tensor g =
        torch::exp(-2.0 * M_PI * M_PI * sigma * sigma * (k.kz * k.kz + k.ky * k.ky + k.kx * k.kx))
            .to(torch::kFloat32);
    n = torch::fft::irfftn(torch::fft::rfftn(n, c10::nullopt, std::vector<int64_t>{0, 1, 2}) * g,
                           std::vector<int64_t>{Z, Y, X}, std::vector<int64_t>{0, 1, 2});
    n = n / n.std().clamp_min(1e-12) * p.ice_noise;
    vol.add_(n * slab);
  }
  out.potential = (vol * slab).contiguous();  // nothing outside the slab (vacuum)
  return out;
}

}  // namespace unwedge
