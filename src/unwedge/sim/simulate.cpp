// Simulation driver: presets, specimen, acquisition, WBP of the series, outputs.
#include "unwedge/sim/simulate.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"
#include "unwedge/core/log.h"
#include "unwedge/io/mrc.h"
#include "unwedge/io/tilt.h"

namespace fs = std::filesystem;

namespace unwedge {

const std::vector<std::string>& sim_preset_names() {
  static const std::vector<std::string> names{"tiny", "small", "standard", "large"};
  return names;
}

SimParams sim_preset(const std::string& name) {
  SimParams p;
  p.preset = name;
  SpecimenParams& s = p.specimen;
  if (name == "tiny") {
    s.shape = {32, 64, 64};
    s.thickness_A = 300;
    s.n_particles = 12;
    s.n_vesicles = 1;
    s.vesicle_radius_min_A = 60;
    s.vesicle_radius_max_A = 110;
    s.n_microtubules = 0;
    s.n_actin = 1;
    s.n_gold = 2;
  } else if (name == "small") {
    s.shape = {64, 128, 128};
    s.thickness_A = 500;
    s.n_particles = 60;
    s.n_vesicles = 2;
    s.vesicle_radius_min_A = 100;
    s.vesicle_radius_max_A = 230;
    s.n_microtubules = 1;
    s.n_actin = 2;
    s.n_gold = 3;
  } else if (name == "standard") {
    s.shape = {96, 256, 256};
    s.thickness_A = 800;
    s.n_particles = 250;
    s.n_vesicles = 4;
    s.vesicle_radius_min_A = 150;
    s.vesicle_radius_max_A = 350;
    s.n_microtubules = 2;
    s.n_actin = 4;
    s.n_gold = 6;
    // Thicker ice: more dose and contrast keep CC(tomo, gt) in 0.2-0.4 (0.29 measured, seed 1).
    p.acquisition.total_dose = 150;
    p.acquisition.protein_potential_V = 3.0;
  } else if (name == "large") {
    s.shape = {192, 512, 512};
    s.thickness_A = 1600;
    s.n_particles = 1200;
    s.n_vesicles = 10;
    s.vesicle_radius_min_A = 150;
    s.vesicle_radius_max_A = 500;
    s.n_microtubules = 4;
    s.n_actin = 8;
    s.n_gold = 15;
    p.acquisition.total_dose = 200;
    p.acquisition.protein_potential_V = 4.0;
  } else {
    std::string known;
    for (const auto& n : sim_preset_names()) known += (known.empty() ? "" : ", ") + n;
    throw ValueError("preset '" + name + "' is not known (" + known + ")");
  }
  s.voxel_A = 10.0;
  p.acquisition.thickness_A = s.thickness_A;
  return p;
}

double pearson_cc(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor x = a.to(torch::kFloat64).flatten(), y = b.to(torch::kFloat64).flatten();
  x = x - x.mean();
  y = y - y.mean();
  double den = std::sqrt((x * x).sum().item<double>() * (y * y).sum().item<double>());
  return den > 0 ? (x * y).sum().item<double>() / den : 0.0;
}

SimResult simulate_run(const SimParams& p, bool progress) {
  auto t0 = std::chrono::steady_clock::now();
  SimResult r;
  // The parameters are checked before the templates are resampled to the voxel size (seconds).
  specimen_check(p.specimen);
  acquisition_check(p.acquisition);
  std::vector<SimTemplate> templates;
  if (p.use_maps) {
    std::string dir = p.maps_dir.empty() ? sim_default_maps_dir() : p.maps_dir;
    templates = templates_load_dir(dir, p.specimen.voxel_A);
  }
  for (const auto& f : p.pdb_files) templates.push_back(template_from_atoms(f, p.specimen.voxel_A));
  SpecimenParams sp = p.specimen;
  sp.seed = p.seed;
  r.specimen = specimen_make(sp, templates);
  AcquisitionParams ap = p.acquisition;
  ap.seed = p.seed;
  ap.thickness_A = std::min(p.specimen.thickness_A, p.specimen.shape[0] * p.specimen.voxel_A);
  r.acquisition = acquire(r.specimen.potential, p.specimen.voxel_A, ap, progress);
  const Acquisition& a = r.acquisition;
  const int64_t Z = p.specimen.shape[0];
  WbpOptions wo;
  wo.lowpass = p.wbp_lowpass;
  // WBP is row-wise linear: series that share their angles are reconstructed in one call with
  // their Y rows stacked (one filter, one projection matrix, one sparse product).
  const int64_t Y = p.specimen.shape[1];
  auto wbp_stacked = [&](const std::vector<at::Tensor>& series, const std::vector<double>& ang) {
    auto rec = wbp(torch::cat(series, /*dim=*/1), ang, Z, wo);  // [Z, k * Y, X]
    std::vector<at::Tensor> out;
    for (size_t k = 0; k < series.size(); ++k) out.push_back(rec.narrow(1, k * Y, Y).contiguous());
    return out;
  };
  if (a.even_angles == a.angles && a.odd_angles == a.angles) {  // frame split or no noise
    auto rec = wbp_stacked({a.full, a.even, a.odd, a.clean}, a.angles);
    r.tomo = rec[0], r.even = rec[1], r.odd = rec[2], r.clean_tomo = rec[3];
  } else {  // tilt split: the halves have their own angles
    auto rec = wbp_stacked({a.full, a.clean}, a.angles);
    r.tomo = rec[0], r.clean_tomo = rec[1];
    r.even = wbp(a.even, a.even_angles, Z, wo);
    r.odd = wbp(a.odd, a.odd_angles, Z, wo);
  }
  r.cc_tomo_gt = pearson_cc(r.tomo, r.specimen.potential);
  r.cc_clean_gt = pearson_cc(r.clean_tomo, r.specimen.potential);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

const std::vector<std::string>& sim_output_files() {
  static const std::vector<std::string> files{
      "gt.mrc",          "tomo.mrc",        "even.mrc",      "odd.mrc",  "clean_tomo.mrc",
      "tilt_series.mrc", "tilt_series.tlt", "particles.csv", "meta.json"};
  return files;
}

void simulate_check_outputs(const std::string& dir, bool overwrite) {
  if (!fs::exists(dir)) {  // created by simulate_write; its parent must exist
    fs::path parent = fs::absolute(dir).parent_path();
    if (!fs::is_directory(parent)) {
      throw IoError("output folder " + dir + ": parent folder " + parent.string() + " does not exist");
    }
    return;
  }
  if (!fs::is_directory(dir)) throw IoError("output folder " + dir + " is a file, not a folder");
  for (const auto& f : sim_output_files()) output_check_writable((fs::path(dir) / f).string(), overwrite);
}

void simulate_write(const std::string& dir, const SimParams& p, const SimResult& r,
                    bool overwrite, const std::string& label) {
  simulate_check_outputs(dir, overwrite);
  // The set is written into a temporary folder beside `dir` and moved into place when complete:
  // a failed run (full disk, a signal) leaves neither part of a set nor a reason to refuse the
  // rerun.
  AtomicFolder staging(dir);
  auto path = [&](const std::string& f) { return (fs::path(staging.tmp_path()) / f).string(); };
  const double vs = p.specimen.voxel_A;
  MrcWriteOptions wo;
  wo.overwrite = overwrite;
  wo.label = label;
  auto write = [&](const std::string& f, const at::Tensor& t) {
    Volume v;
    v.data = t.to(torch::kFloat32).contiguous();
    v.meta.voxel_size = {vs, vs, vs};
    mrc_write(path(f), v, wo);
  };
  write("gt.mrc", r.specimen.potential);
  write("tomo.mrc", r.tomo);
  write("even.mrc", r.even);
  write("odd.mrc", r.odd);
  write("clean_tomo.mrc", r.clean_tomo);
  write("tilt_series.mrc", r.acquisition.full);
  tilt_write(path("tilt_series.tlt"), r.acquisition.angles, overwrite);

  std::ostringstream csv;
  csv << "class,class_id,x_vox,y_vox,z_vox,quat_w,quat_x,quat_y,quat_z,radius_vox\n";
  char buf[512];
  for (const auto& q : r.specimen.particles) {
    std::snprintf(buf, sizeof buf, "%s,%d,%.3f,%.3f,%.3f,%.8f,%.8f,%.8f,%.8f,%.3f\n",
                  q.class_name.c_str(), q.class_id, q.centre_xyz[0], q.centre_xyz[1],
                  q.centre_xyz[2], q.quat_wxyz[0], q.quat_wxyz[1], q.quat_wxyz[2],
                  q.quat_wxyz[3], q.radius_vox);
    csv << buf;
  }
  write_text_file_atomic(path("particles.csv"), csv.str(), overwrite);

  const SpecimenParams& s = p.specimen;
  const AcquisitionParams& a = p.acquisition;
  const Acquisition& acq = r.acquisition;
  nlohmann::ordered_json j;
  j["program"] = label;
  j["preset"] = p.preset;
  j["seed"] = p.seed;
  j["shape_xyz"] = {s.shape[2], s.shape[1], s.shape[0]};
  j["voxel_size_A"] = vs;
  j["units"] = "gt: excess potential over ice, protein interior = 1; tomo/even/odd: WBP of "
               "processed data d = (1 - counts/flat)/2 (phase-flipped when ctf and phase_flip)";
  j["specimen"] = {{"thickness_A", s.thickness_A},
                   {"n_particles_requested", s.n_particles},
                   {"n_particles_placed", r.specimen.particles.size()},
                   {"n_vesicles", r.specimen.n_vesicles},
                   {"vesicle_radius_A", {s.vesicle_radius_min_A, s.vesicle_radius_max_A}},
                   {"n_microtubules", r.specimen.n_microtubules},
                   {"n_actin", r.specimen.n_actin},
                   {"n_gold", r.specimen.n_gold},
                   {"gold_radius_A", s.gold_radius_A},
                   {"gold_density", s.gold_density},
                   {"ice_noise", s.ice_noise},
                   {"ice_noise_scale_A", s.ice_noise_scale_A},
                   {"maps_dir", p.use_maps ? (p.maps_dir.empty() ? sim_default_maps_dir() : p.maps_dir) : ""},
                   {"pdb_files", p.pdb_files},
                   {"classes", r.specimen.class_names}};
  j["acquisition"] = {{"tilt_min_deg", a.tilt_min_deg},
                      {"tilt_max_deg", a.tilt_max_deg},
                      {"tilt_step_deg", a.tilt_step_deg},
                      {"n_tilts", acq.angles.size()},
                      {"order", tilt_order_name(a.order)},
                      {"acquisition_order_deg", [&] {
                         std::vector<double> o;
                         for (auto i : acq.order) o.push_back(acq.angles[i]);
                         return o;
                       }()},
                      {"total_dose_e_per_A2", a.total_dose},
                      {"dose_per_tilt_e_per_A2", acq.dose.empty() ? 0.0 : acq.dose[0]},
                      {"voltage_kV", a.voltage_kV},
                      {"protein_potential_V", a.protein_potential_V},
                      {"amplitude_contrast", a.amplitude_contrast},
                      {"ctf", a.ctf},
                      {"defocus_um", a.defocus_um},
                      {"cs_mm", a.cs_mm},
                      {"phase_flip", a.phase_flip},
                      {"radiation_damage", a.radiation_damage},
                      {"mean_free_path_nm", a.mean_free_path_nm},
                      {"misalign_px", a.misalign_px},
                      {"shift_x_px", acq.shift_x},
                      {"shift_y_px", acq.shift_y},
                      {"split", half_split_name(a.split)},
                      {"noise", a.noise}};
  j["reconstruction"] = {{"method", "wbp"}, {"filter", "ramp"}, {"lowpass", p.wbp_lowpass}};
  j["cc_tomo_gt"] = r.cc_tomo_gt;
  j["cc_clean_tomo_gt"] = r.cc_clean_gt;
  j["seconds"] = r.seconds;
  j["files"] = sim_output_files();
  write_text_file_atomic(path("meta.json"), j.dump(2) + "\n", overwrite);
  staging.commit();
}

}  // namespace unwedge
