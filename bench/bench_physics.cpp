// Projector, back-projector and WBP throughput on a standard-preset-sized volume.
// usage: bench_physics [--size Z Y X] [--tilts N] [--range DEG] [--json FILE]
// Prints one JSON object: times in seconds, throughput in voxel-updates per second
// (one voxel-update = one voxel x one tilt).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "unwedge/physics/projector.h"

using namespace unwedge;

namespace {

template <typename F>
double best_of(int reps, F&& f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t Z = 96, Y = 256, X = 256;
  int tilts = 41, reps = 2;
  double range = 60.0;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--size") && i + 3 < argc) {
      Z = std::stoll(argv[++i]);
      Y = std::stoll(argv[++i]);
      X = std::stoll(argv[++i]);
    } else if (!std::strcmp(argv[i], "--tilts") && i + 1 < argc) {
      tilts = std::stoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--range") && i + 1 < argc) {
      range = std::stod(argv[++i]);
    } else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = std::stoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--json") && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: bench_physics [--size Z Y X] [--tilts N] [--range DEG] "
                           "[--reps R] [--json FILE]\n");
      return 2;
    }
  }
  torch::Device dev = torch::cuda::is_available() ? torch::kCUDA : torch::kCPU;
  std::vector<double> ang;
  for (int t = 0; t < tilts; ++t) ang.push_back(-range + 2 * range * t / std::max(1, tilts - 1));
  torch::manual_seed(0);
  auto vol = torch::randn({Z, Y, X}, torch::TensorOptions().device(dev));
  at::Tensor series, back, rec;
  auto sync = [&] {
    if (dev.is_cuda()) torch::cuda::synchronize();
  };
  double t_proj = best_of(reps, [&] { series = project(vol, ang); sync(); });
  double t_back = best_of(reps, [&] { back = backproject(series, ang, Z); sync(); });
  double t_wbp = best_of(reps, [&] { rec = wbp(series, ang, Z); sync(); });
  double updates = double(Z) * Y * X * tilts;
  nlohmann::json j = {
      {"bench", "physics"},
      {"device", dev.is_cuda() ? "cuda" : "cpu"},
      {"threads", torch::get_num_threads()},
      {"shape_zyx", {Z, Y, X}},
      {"tilts", tilts},
      {"range_deg", range},
      {"project_s", t_proj},
      {"backproject_s", t_back},
      {"wbp_s", t_wbp},
      {"project_voxel_updates_per_s", updates / t_proj},
      {"backproject_voxel_updates_per_s", updates / t_back},
      {"reps_best_of", reps},
  };
  std::string s = j.dump(2);
  if (json_path.empty()) {
    std::printf("%s\n", s.c_str());
  } else {
    std::ofstream(json_path) << s << "\n";
  }
  return 0;
}
