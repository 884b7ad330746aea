// Acquisition: per-tilt projection (physics/projector.h), image formation on 2D tensors, noise.
#include "unwedge/sim/acquisition.h"

#include <algorithm>
#include <cmath>
#include <random>

#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/core/progress.h"
#include "unwedge/physics/projector.h"

namespace unwedge {

namespace {

/// Frequencies (1/Å) of the rfft grid of a [Y, X] image: ky [Y, 1], kx [1, X/2+1] (float64).
std::pair<at::Tensor, at::Tensor> freq_2d(int64_t ny, int64_t nx, double pixel_A) {
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  return {torch::fft::fftfreq(ny, pixel_A, o).view({-1, 1}),
          torch::fft::rfftfreq(nx, pixel_A, o).view({1, -1})};
}

at::Tensor rfft2(const at::Tensor& img) {
  return torch::fft::rfftn(img, c10::nullopt, std::vector<int64_t>{-2, -1});
}
at::Tensor irfft2(const at::Tensor& f, int64_t ny, int64_t nx) {
  return torch::fft::irfftn(f, std::vector<int64_t>{ny, nx}, std::vector<int64_t>{-2, -1});
}

}  // namespace

std::string tilt_order_name(TiltOrder o) {
  return o == TiltOrder::dose_symmetric ? "dose-symmetric" : "sequential";
}
TiltOrder tilt_order_parse(const std::string& s) {
  if (s == "dose-symmetric") return TiltOrder::dose_symmetric;
  if (s == "sequential") return TiltOrder::sequential;
  throw ValueError("tilt order '" + s + "' is not known (dose-symmetric, sequential)");
}
std::string half_split_name(HalfSplit s) { return s == HalfSplit::frame ? "frame" : "tilt"; }
HalfSplit half_split_parse(const std::string& s) {
  if (s == "frame") return HalfSplit::frame;
  if (s == "tilt") return HalfSplit::tilt;
  throw ValueError("half split '" + s + "' is not known (frame, tilt)");
}

void acquisition_check(const AcquisitionParams& p) {
  auto bad = [](const std::string& what, double v, const std::string& why) {
    throw ValueError(what + " = " + std::to_string(v) + ": " + why);
  };
  if (p.tilt_min_deg < -90 || p.tilt_max_deg > 90 || p.tilt_min_deg > p.tilt_max_deg) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "tilt range %g .. %g degrees", p.tilt_min_deg, p.tilt_max_deg);
    throw ValueError(std::string(buf) + " must lie in [-90, 90] with min <= max");
  }
  if (!(p.tilt_step_deg > 0)) bad("tilt step (deg)", p.tilt_step_deg, "must be > 0");
  if (!(p.total_dose > 0)) bad("total dose (e/A^2)", p.total_dose, "must be > 0");
  if (!(p.voltage_kV > 0)) bad("voltage (kV)", p.voltage_kV, "must be > 0");
  if (p.amplitude_contrast < 0 || p.amplitude_contrast > 1) bad("amplitude contrast", p.amplitude_contrast, "must be in [0, 1]");
  if (p.ctf && !(p.defocus_um > 0)) bad("defocus (um)", p.defocus_um, "must be > 0 (underfocus)");
  if (p.cs_mm < 0) bad("Cs (mm)", p.cs_mm, "must be >= 0");
  if (p.mean_free_path_nm < 0) bad("mean free path (nm)", p.mean_free_path_nm, "must be >= 0");
  if (p.misalign_px < 0) bad("misalignment (px)", p.misalign_px, "must be >= 0");
  if (p.thickness_A < 0) bad("thickness (A)", p.thickness_A, "must be >= 0");
}

std::vector<double> tilt_angles(double min_deg, double max_deg, double step_deg) {
  std::vector<double> a;
  for (int64_t i = 0;; ++i) {
    double t = min_deg + i * step_deg;
    if (t > max_deg + 1e-6) break;
    a.push_back(std::round(t * 1e6) / 1e6);
  }
  return a;
}

std::vector<int64_t> tilt_acquisition_order(const std::vector<double>& angles, TiltOrder o) {
  const int64_t n = (int64_t)angles.size();
  std::vector<int64_t> order;
  if (o == TiltOrder::sequential) {
    for (int64_t i = 0; i < n; ++i) order.push_back(i);
    return order;
  }
  int64_t start = 0;
  for (int64_t i = 1; i < n; ++i)
    if (std::abs(angles[i]) < std::abs(angles[start])) start = i;
  order.push_back(start);
  int64_t up = start + 1, down = start - 1;
  bool positive = true;
  while (up < n || down >= 0) {
    for (int k = 0; k < 2; ++k) {
      if (positive && up < n) order.push_back(up++);
      else if (!positive && down >= 0) order.push_back(down--);
    }
    positive = !positive;
  }
  return order;
}

double electron_wavelength_A(double kV) {
  double V = kV * 1e3;
  return 12.26426 / std::sqrt(V * (1.0 + 0.978476e-6 * V));
}

double interaction_constant(double kV) {
  const double mc2 = 510998.95;  // electron rest energy, eV
  double V = kV * 1e3, lam = electron_wavelength_A(kV);
  return 2.0 * M_PI / (lam * V) * (mc2 + V) / (2.0 * mc2 + V);
}

at::Tensor ctf_2d(int64_t ny, int64_t nx, double pixel_A, double defocus_um, double cs_mm,
                  double kV, double amplitude_contrast) {
  auto [ky, kx] = freq_2d(ny, nx, pixel_A);
  at::Tensor k2 = ky * ky + kx * kx;  // [Y, X/2+1], 1/Å^2
  double lam = electron_wavelength_A(kV), df = defocus_um * 1e4, cs = cs_mm * 1e7;
  at::Tensor chi = M_PI * lam * df * k2 - 0.5 * M_PI * cs * lam * lam * lam * k2 * k2;
  double A = amplitude_contrast;
  return (-(std::sqrt(1.0 - A * A) * torch::sin(chi) + A * torch::cos(chi))).to(torch::kFloat32);
}

Acquisition acquire(const at::Tensor& potential, double voxel_A, const AcquisitionParams& p,
                    bool progress) {
  acquisition_check(p);
  if (potential.dim() != 3) throw ShapeError("acquire: potential must be [Z, Y, X]");
  const int64_t Y = potential.size(1), X = potential.size(2);
  Acquisition a;
  a.angles = tilt_angles(p.tilt_min_deg, p.tilt_max_deg, p.tilt_step_deg);
  const int64_t n = (int64_t)a.angles.size();
  a.order = tilt_acquisition_order(a.angles, p.order);
  const double dose_tilt = p.total_dose / (double)n;
  a.dose.assign(n, dose_tilt);

  // Dose received before the middle of each exposure, in acquisition order.
  std::vector<double> prior(n, 0.0);
  for (int64_t k = 0; k < n; ++k) prior[a.order[k]] = (k + 0.5) * dose_tilt;

  // Per-tilt misalignment, drawn first so it does not depend on the noise settings.
  std::mt19937_64 rng(p.seed * 0xD1B54A32D192ED03ULL + 7);
  std::normal_distribution<double> N01(0.0, 1.0);
  a.shift_x.assign(n, 0.0);
  a.shift_y.assign(n, 0.0);
  if (p.misalign_px > 0)
    for (int64_t i = 0; i < n; ++i) {
      a.shift_x[i] = p.misalign_px * N01(rng);
      a.shift_y[i] = p.misalign_px * N01(rng);
    }
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(p.seed + 4242);

  // Filters on the rfft grid of one image [Y, X/2+1].
  auto [ky, kx] = freq_2d(Y, X, voxel_A);
  at::Tensor kmag = (ky * ky + kx * kx).sqrt();  // 1/Å
  at::Tensor ctf = p.ctf ? ctf_2d(Y, X, voxel_A, p.defocus_um, p.cs_mm, p.voltage_kV,
                                  p.amplitude_contrast)
                         : -torch::ones({Y, X / 2 + 1}, torch::kFloat32);
  at::Tensor flip = p.phase_flip ? torch::where(ctf > 0, -1.0, 1.0).to(torch::kFloat32)
                                 : torch::ones_like(ctf);
  at::Tensor ne = 0.245 * kmag.clamp_min(1e-6).pow(-1.665) + 2.81;
  if (p.voltage_kV < 250) ne = ne * 0.8;
  const double phase_per_unit = interaction_constant(p.voltage_kV) * p.protein_potential_V * voxel_A;
  const double mfp_A = p.mean_free_path_nm * 10.0;

  std::vector<at::Tensor> clean(n), full(n), half_e(n), half_o(n);
  at::Tensor projections = project(potential, a.angles);  // [n, Y, X], all tilts in one product
  Progress bar("simulate", n, "tilt", progress);
  for (int64_t i = 0; i < n; ++i) {
    const double th = a.angles[i];
    at::Tensor phi = projections[i] * phase_per_unit;  // [Y, X], rad
    at::Tensor F = rfft2(phi.to(torch::kFloat32));
    at::Tensor H = ctf;
    if (p.radiation_damage) H = H * torch::exp(-prior[i] / (2.0 * ne)).to(torch::kFloat32);
    if (a.shift_x[i] != 0 || a.shift_y[i] != 0) {
      // Fourier shift by (shift_x, shift_y) pixels.
      at::Tensor ph = -2.0 * M_PI * (ky * voxel_A * a.shift_y[i] + kx * voxel_A * a.shift_x[i]);
      H = H * torch::polar(torch::ones_like(ph), ph).to(torch::kComplexFloat);
    }
    at::Tensor contrast = irfft2(F * H, Y, X);  // (I - 1) / 2, [Y, X]
    at::Tensor I = 1.0 + 2.0 * contrast;
    double att = mfp_A > 0 ? std::exp(-p.thickness_A / (mfp_A * std::cos(th * M_PI / 180.0))) : 1.0;
    double flat = dose_tilt * voxel_A * voxel_A * att;  // electrons per pixel, no specimen
    auto process = [&](const at::Tensor& counts, double f) {
      at::Tensor d = (1.0 - counts / f) * 0.5;
      if (!p.phase_flip) return d.contiguous();
      return irfft2(rfft2(d) * flip, Y, X).contiguous();
    };
    clean[i] = process(I * flat, flat);
    at::Tensor rate = (I.clamp_min(0) * flat).to(torch::kFloat64);
    if (!p.noise) {
      full[i] = clean[i];
      half_e[i] = clean[i];
      half_o[i] = clean[i];
    } else if (p.split == HalfSplit::frame) {
      at::Tensor ce = at::poisson(rate * 0.5, gen), co = at::poisson(rate * 0.5, gen);
      full[i] = process((ce + co).to(torch::kFloat32), flat);
      half_e[i] = process(ce.to(torch::kFloat32), flat * 0.5);
      half_o[i] = process(co.to(torch::kFloat32), flat * 0.5);
    } else {
      full[i] = process(at::poisson(rate, gen).to(torch::kFloat32), flat);
    }
    bar.update(i + 1);
  }
  bar.finish();
  a.clean = torch::stack(clean);
  a.full = torch::stack(full);
  if (p.split == HalfSplit::frame || !p.noise) {
    a.even = p.noise ? torch::stack(half_e) : a.full;
    a.odd = p.noise ? torch::stack(half_o) : a.full;
    a.even_angles = a.odd_angles = a.angles;
    a.even_clean = a.odd_clean = a.clean;
  }
  if (p.split == HalfSplit::tilt) {
    using at::indexing::Slice;
    a.even = a.full.index({Slice(0, c10::nullopt, 2)}).contiguous();
    a.odd = a.full.index({Slice(1, c10::nullopt, 2)}).contiguous();
    a.even_clean = a.clean.index({Slice(0, c10::nullopt, 2)}).contiguous();
    a.odd_clean = a.clean.index({Slice(1, c10::nullopt, 2)}).contiguous();
    a.even_angles.clear();
    a.odd_angles.clear();
    for (int64_t i = 0; i < n; ++i) (i % 2 ? a.odd_angles : a.even_angles).push_back(a.angles[i]);
  }
  return a;
}

}  // namespace unwedge
