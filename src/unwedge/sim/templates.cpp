// Particle templates: loading, resampling, normalisation, and atomic models via gemmi.
#include "unwedge/sim/templates.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>

#include <torch/torch.h>

#include "unwedge/core/error.h"
#include "unwedge/io/mrc.h"
#include "unwedge/ops/fourier.h"

#ifdef UNWEDGE_HAVE_GEMMI
#include <gemmi/c4322.hpp>
#include <gemmi/pdb.hpp>  // PDB format only: gemmi's mmCIF reader needs PEGTL headers
#endif

namespace fs = std::filesystem;

namespace unwedge {

namespace {

/// Gaussian blur of a [z, y, x] volume with sigma in voxels, in Fourier space (periodic).
at::Tensor blur_gaussian(const at::Tensor& v, double sigma) {
  if (sigma <= 0) return v;
  FreqGrid k = fourier_freq_rfft({v.size(0), v.size(1), v.size(2)},
                                 torch::TensorOptions().dtype(torch::kFloat64));
  at::Tensor k2 = k.kz * k.kz + k.ky * k.ky + k.kx * k.kx;              // [z, y, x/2+1]
  at::Tensor g = torch::exp(-2.0 * M_PI * M_PI * sigma * sigma * k2).to(torch::kFloat32);
  at::Tensor f = torch::fft::rfftn(v, c10::nullopt, std::vector<int64_t>{0, 1, 2});
  return torch::fft::irfftn(f * g, std::vector<int64_t>{v.size(0), v.size(1), v.size(2)},
                            std::vector<int64_t>{0, 1, 2});
}

}  // namespace

std::string sim_default_maps_dir() {
  if (const char* env = std::getenv("UNWEDGE_DATA")) {
    return (fs::path(env) / "templates_10A").string();
  }
  // An installed program (PREFIX/bin/unwedge) finds them in PREFIX/share/unwedge.
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path installed = exe.parent_path().parent_path() / "share/unwedge/templates_10A";
    if (fs::is_directory(installed, ec)) return installed.string();
  }
  return (fs::path(UNWEDGE_DATA_DIR) / "templates_10A").lexically_normal().string();
}

at::Tensor template_resample(const at::Tensor& map, double from_A, double to_A) {
  if (map.dim() != 3) throw ShapeError("template_resample: map must be [z, y, x], got " +
                                       std::to_string(map.dim()) + " dims");
  if (!(from_A > 0) || !(to_A > 0)) {
    throw ValueError("template_resample: voxel sizes must be > 0, got " +
                     std::to_string(from_A) + " and " + std::to_string(to_A) + " A");
  }
  at::Tensor m = map.to(torch::kFloat32).contiguous();
  double f = from_A / to_A;  // output voxels per input voxel
  if (std::abs(f - 1.0) < 1e-9) return m.clone();
  if (f < 1.0) {
    double s = 1.0 / f;  // input voxels per output voxel
    m = blur_gaussian(m, 0.5 * std::sqrt(s * s - 1.0));
  }
  std::vector<at::Tensor> axes;
  std::vector<int64_t> out_shape;
  for (int d = 0; d < 3; ++d) {
    int64_t n = m.size(d);
    int64_t no = std::max<int64_t>(1, (int64_t)std::ceil(n * f - 1e-9));
    out_shape.push_back(no);
    // Output voxel i sits at (i - (no-1)/2) * to_A from the centre; in input voxels that is
    // (i - (no-1)/2) / f + (n-1)/2, normalised for align_corners=true.
    at::Tensor i = torch::arange(no, torch::kFloat64);
    at::Tensor src = (i - (no - 1) / 2.0) / f + (n - 1) / 2.0;
    axes.push_back(n > 1 ? src * (2.0 / (n - 1)) - 1.0 : torch::zeros_like(src));
  }
  auto grids = torch::meshgrid({axes[0], axes[1], axes[2]}, "ij");  // each [Z', Y', X']
  at::Tensor grid = torch::stack({grids[2], grids[1], grids[0]}, -1)   // (x, y, z) last
                        .to(torch::kFloat32)
                        .unsqueeze(0);                                  // [1, Z', Y', X', 3]
  namespace F = torch::nn::functional;
  at::Tensor out = F::grid_sample(m.view({1, 1, m.size(0), m.size(1), m.size(2)}), grid,
                                  F::GridSampleFuncOptions()
                                      .mode(torch::kBilinear)
                                      .padding_mode(torch::kZeros)
                                      .align_corners(true));
  return out.view({out_shape[0], out_shape[1], out_shape[2]}).contiguous();
}

at::Tensor template_normalise(const at::Tensor& map) {
  at::Tensor m = map.to(torch::kFloat32).clamp_min(0);
  at::Tensor v = std::get<0>(m.flatten().to(torch::kFloat64).sort(/*dim=*/0, /*descending=*/true));
  double total = v.sum().item<double>();
  if (!(total > 0)) throw ValueError("template_normalise: the map has no positive density");
  at::Tensor cum = v.cumsum(0);
  int64_t n90 = (cum < 0.9 * total).sum().item<int64_t>() + 1;
  double mean90 = cum[n90 - 1].item<double>() / (double)n90;
  return (m / mean90).contiguous();
}

double template_radius(const at::Tensor& map, double threshold) {
  at::Tensor idx = torch::nonzero(map > threshold).to(torch::kFloat64);  // [N, 3]
  if (idx.size(0) == 0) return 1.0;
  at::Tensor c = torch::tensor({(map.size(0) - 1) / 2.0, (map.size(1) - 1) / 2.0,
                                (map.size(2) - 1) / 2.0},
                               torch::kFloat64);
  return (idx - c).pow(2).sum(1).sqrt().max().item<double>() + 1.0;
}

std::vector<SimTemplate> templates_load_dir(const std::string& dir, double voxel_A) {
  if (!fs::is_directory(dir)) throw IoError("maps folder " + dir + ": not a directory");
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".mrc" || ext == ".map")) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw IoError("maps folder " + dir + ": no .mrc or .map files");
  std::vector<SimTemplate> out;
  for (const auto& p : files) {
    // Shipped and user maps are often pre-2014 files (nversion 0): read them permissively.
    MrcReadOptions ro;
    ro.permissive = true;
    ro.log_warnings = false;
    Volume v = mrc_read(p.string(), ro);
    double from_A = v.meta.voxel_size[0];
    if (!(from_A > 0)) {
      throw FormatError(p.string() + ": voxel size " + std::to_string(from_A) +
                        " A is not positive");
    }
    SimTemplate t;
    t.name = p.stem().string();
    t.density = template_normalise(template_resample(v.data, from_A, voxel_A));
    t.radius_vox = template_radius(t.density);
    out.push_back(std::move(t));
  }
  return out;
}

bool templates_have_gemmi() {
#ifdef UNWEDGE_HAVE_GEMMI
  return true;
#else
  return false;
#endif
}

SimTemplate template_from_atoms(const std::string& path, double voxel_A) {
#ifndef UNWEDGE_HAVE_GEMMI
  throw ValueError("atomic model " + path + ": this build has no gemmi (rebuild with gemmi)");
#else
  if (!fs::is_regular_file(path)) throw IoError("atomic model " + path + ": no such file");
  gemmi::Structure st;
  try {
    st = gemmi::read_pdb_file(path);
  } catch (const std::exception& e) {
    throw FormatError("atomic model " + path + ": " + e.what());
  }
  if (st.models.empty()) throw FormatError("atomic model " + path + ": no models");
  // Atoms of the first model grouped by element: positions (Å), occupancies, B factors.
  struct Group { std::vector<double> xyz, occ; double bsum = 0; };
  std::map<int, Group> groups;
  double lo[3] = {1e30, 1e30, 1e30}, hi[3] = {-1e30, -1e30, -1e30};
  for (const auto& ch : st.models[0].chains)
    for (const auto& res : ch.residues)
      for (const auto& a : res.atoms) {
        if (!gemmi::C4322<double>::has(a.element.elem)) continue;
        Group& g = groups[(int)a.element.elem];
        double p[3] = {a.pos.x, a.pos.y, a.pos.z};
        for (int d = 0; d < 3; ++d) {
          g.xyz.push_back(p[d]);
          lo[d] = std::min(lo[d], p[d]);
          hi[d] = std::max(hi[d], p[d]);
        }
        g.occ.push_back(a.occ);
        g.bsum += a.b_iso;
      }
  if (groups.empty()) throw FormatError("atomic model " + path + ": no atoms");
  // A cubic box around the atoms with a margin of 3 voxels + 5 Å.
  double extent = std::max({hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]});
  int64_t n = (int64_t)std::ceil((extent + 10.0) / voxel_A) + 6;
  double centre[3] = {(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2};
  auto opts64 = torch::TensorOptions().dtype(torch::kFloat64);
  at::Tensor kz = torch::fft::fftfreq(n, voxel_A, opts64).view({-1, 1, 1});  // 1/Å
  at::Tensor ky = torch::fft::fftfreq(n, voxel_A, opts64).view({1, -1, 1});
  at::Tensor kx = torch::fft::rfftfreq(n, voxel_A, opts64).view({1, 1, -1});
  at::Tensor s2 = kz * kz + ky * ky + kx * kx;  // |k|^2, [n, n, n/2+1]
  at::Tensor spec = torch::zeros({n, n, n / 2 + 1}, torch::kComplexDouble);
  for (auto& [el, g] : groups) {
    int64_t na = (int64_t)g.occ.size();
    at::Tensor xyz = torch::tensor(g.xyz, opts64).view({na, 3});
    at::Tensor occ = torch::tensor(g.occ, opts64);
    // Voxel coordinates (x, y, z) with the box centre at (n-1)/2; trilinear splatting.
    at::Tensor c = torch::tensor({centre[0], centre[1], centre[2]}, opts64);
    at::Tensor q = (xyz - c) / voxel_A + (n - 1) / 2.0;  // [na, 3]
    at::Tensor q0 = q.floor();
    at::Tensor w1 = q - q0;
    at::Tensor grid = torch::zeros({n * n * n}, opts64);
    for (int corner = 0; corner < 8; ++corner) {
      at::Tensor w = occ.clone();
      at::Tensor lin = torch::zeros({na}, torch::kLong);
      int64_t stride[3] = {1, n, n * n};  // x, y, z
      for (int d = 0; d < 3; ++d) {
        bool up = (corner >> d) & 1;
        at::Tensor wd = up ? w1.select(1, d) : 1.0 - w1.select(1, d);
        w = w * wd;
        lin = lin + (q0.select(1, d).to(torch::kLong) + (up ? 1 : 0)) * stride[d];
      }
      grid.index_add_(0, lin, w);
    }
    at::Tensor f = torch::fft::rfftn(grid.view({n, n, n}));
    // Form factor of the element (International Tables C 4.3.2.2): f(s) = sum a_i
    // exp(-b_i s^2 / 4) with s = |k| in 1/Å; the element's mean B factor is added to each b_i.
    const auto& coef = gemmi::C4322<double>::get((gemmi::El)el);
    double bmean = g.bsum / (double)na;
    at::Tensor ff = torch::zeros_like(s2);
    for (int i = 0; i < 5; ++i) ff = ff + coef.a(i) * torch::exp(-(coef.b(i) + bmean) * s2 / 4.0);
    spec = spec + f * ff;
  }
  at::Tensor pot = torch::fft::irfftn(spec, std::vector<int64_t>{n, n, n}).to(torch::kFloat32);
  SimTemplate t;
  t.name = fs::path(path).stem().string();
  t.density = template_normalise(pot);
  t.radius_vox = template_radius(t.density);
  return t;
#endif
}

}  // namespace unwedge
