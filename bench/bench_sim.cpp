// Simulator timing by stage, and the gt / tomo / even slice montage of a simulation folder.
// usage: bench_sim [--preset NAME] [--seed S] [--json FILE]
//        bench_sim --preset NAME --seed S --write DIR   (what `unwedge simulate` writes)
//        bench_sim --montage DIR OUT.png [--zoom N]
// The first form runs specimen, acquisition (projector) and the four WBPs of `simulate` as
// simulate_run does and prints one JSON object with the seconds of each stage. The second reads
// DIR/{gt,tomo,even}.mrc and writes a 2 x 3 PNG: XY (z = Z/2) on top, XZ (y = Y/2) below, columns
// gt, tomo, even; each volume on its own 0.5-99.5 % contrast.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "unwedge/eval/png.h"
#include "unwedge/io/mrc.h"
#include "unwedge/physics/projector.h"
#include "unwedge/sim/simulate.h"
#include "unwedge/sim/templates.h"

using namespace unwedge;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int montage(const std::string& dir, const std::string& out, int zoom) {
  std::vector<Image> top, bottom;
  for (const char* name : {"gt", "tomo", "even"}) {
    at::Tensor v = mrc_read(dir + "/" + name + ".mrc").data.to(torch::kFloat32);
    Contrast c = contrast_percentile(v);
    CentralSlices s = central_slices(v);
    top.push_back(image_from_slice(s.xy, c, zoom));
    bottom.push_back(image_from_slice(s.xz, c, zoom));
  }
  std::vector<Image> all = top;
  all.insert(all.end(), bottom.begin(), bottom.end());
  png_write(out, image_montage(all, /*cols=*/3), /*overwrite=*/true);
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string preset = "standard", json_path;
  uint64_t seed = 1;
  std::string write_dir;
  int zoom = 1;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--montage") && i + 2 < argc) {
      std::string dir = argv[++i], out = argv[++i];
      if (i + 2 < argc && !std::strcmp(argv[i + 1], "--zoom")) zoom = std::stoi(argv[i + 2]);
      return montage(dir, out, zoom);
    } else if (!std::strcmp(argv[i], "--preset") && i + 1 < argc) {
      preset = argv[++i];
    } else if (!std::strcmp(argv[i], "--seed") && i + 1 < argc) {
      seed = std::stoull(argv[++i]);
    } else if (!std::strcmp(argv[i], "--write") && i + 1 < argc) {
      write_dir = argv[++i];
    } else if (!std::strcmp(argv[i], "--json") && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: bench_sim [--preset NAME] [--seed S] [--json FILE]\n"
                           "       bench_sim --montage DIR OUT.png [--zoom N]\n");
      return 2;
    }
  }
  SimParams p = sim_preset(preset);
  p.seed = seed;
  if (!write_dir.empty()) {  // the library path of `unwedge simulate`, timed end to end
    auto t0 = std::chrono::steady_clock::now();
    SimResult r = simulate_run(p, /*progress=*/false);
    simulate_write(write_dir, p, r, /*overwrite=*/true, "bench_sim --write");
    std::printf("{\"preset\": \"%s\", \"seconds_with_write\": %.2f, \"cc_tomo_gt\": %.4f}\n",
                preset.c_str(), seconds_since(t0), r.cc_tomo_gt);
    return 0;
  }
  auto t0 = std::chrono::steady_clock::now();
  std::vector<SimTemplate> templates = templates_load_dir(sim_default_maps_dir(), p.specimen.voxel_A);
  double t_templates = seconds_since(t0);
  SpecimenParams sp = p.specimen;
  sp.seed = seed;
  t0 = std::chrono::steady_clock::now();
  Specimen spec = specimen_make(sp, templates);
  double t_specimen = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  at::Tensor series = project(spec.potential, tilt_angles(-60, 60, 3));
  double t_project = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  SimResult r = simulate_run(p, /*progress=*/false);
  double t_total = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  at::Tensor rec = wbp(series, tilt_angles(-60, 60, 3), p.specimen.shape[0]);
  double t_wbp = seconds_since(t0);
  nlohmann::json j = {{"bench", "sim"},
                      {"preset", preset},
                      {"threads", torch::get_num_threads()},
                      {"templates_s", t_templates},
                      {"specimen_s", t_specimen},
                      {"project_all_tilts_s", t_project},
                      {"one_wbp_s", t_wbp},
                      {"simulate_run_s", t_total},
                      {"cc_tomo_gt", r.cc_tomo_gt},
                      {"cc_clean_tomo_gt", r.cc_clean_gt}};
  std::string s = j.dump(2);
  if (json_path.empty()) std::printf("%s\n", s.c_str());
  else std::ofstream(json_path) << s << "\n";
  return 0;
}
