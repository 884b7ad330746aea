// Training-step and restoration speed of the default n2n U-Net on this machine (JSON to stdout):
// step time (patch^3, batch B) split into sampling and network, achieved network GFLOP/s next to
// a measured matmul GFLOP/s, channels-last-3d vs the default layout, each in fp32 and in bf16
// autocast, restoration Mvoxel/s in both precisions and the fraction of restoration time spent
// outside the network. First the BLAS: which library the
// process mapped (/proc/self/maps), OpenBLAS's kernel, and matmul GFLOP/s (1024^2 and ViT-sized)
// at 1 and 2 threads of both LibTorch and OpenBLAS (a single torch::mm is one BLAS call: its
// threads are OpenBLAS's own, not LibTorch's).
// usage: bench_train [--patch 64] [--batch 4] [--steps 3] [--volume 128] [--threads 0]
//                    [--matmul-only 0]
#include <dlfcn.h>

#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "unwedge/core/device.h"
#include "unwedge/core/threads.h"
#include "unwedge/infer/restore.h"
#include "unwedge/methods/method.h"
#include "unwedge/methods/unet_method.h"
#include "unwedge/train/sampler.h"

using namespace unwedge;
using Clock = std::chrono::steady_clock;

namespace {

double secs(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

/// Forward FLOPs of the UNet3d (convolutions only, 2 per multiply-add) for an input of `vox`
/// voxels: encoder/decoder levels at vox / 8^l, bottleneck at vox / 8^depth.
double unet_forward_flops(const UNet3dOptions& o, double vox) {
  const double k3 = double(o.kernel_size() * o.kernel_size() * o.kernel_size());
  double f = 0;
  int64_t cin = o.in_channels();
  for (int64_t l = 0; l <= o.depth(); ++l) {
    double v = vox / std::pow(8.0, double(l));
    int64_t c = o.base_channels() << l;
    f += 2 * k3 * double(cin * c) * v + 2 * k3 * double(c * c) * v * double(o.convs_per_level() - 1);
    if (l < o.depth()) {  // decoder: upconv (2^3, from 2c) + convs on concat (2c -> c)
      f += 2.0 * double(2 * c * c) * v;  // transposed 2^3 conv: 2c -> c channels
      f += 2 * k3 * double(2 * c * c) * v + 2 * k3 * double(c * c) * v * double(o.convs_per_level() - 1);
    }
    cin = c;
  }
  return f + 2 * double(o.base_channels() * o.out_channels()) * vox;  // head
}

/// Real paths of the BLAS/LAPACK/oneDNN/MKL libraries this process has mapped.
std::vector<std::string> blas_libraries_mapped() {
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> found;
  for (std::string line; std::getline(maps, line);) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    const std::string base = path.substr(path.rfind('/') + 1);
    for (const char* key : {"blas", "lapack", "mkl", "dnnl", "blis"}) {
      if (base.find(key) != std::string::npos) {
        std::error_code ec;
        auto real = std::filesystem::canonical(path, ec);
        found.insert(ec ? path : real.string());
      }
    }
  }
  return {found.begin(), found.end()};
}

/// OpenBLAS's build string and kernel ("" when OpenBLAS is not loaded).
std::string openblas_config() {
  using StrFn = char* (*)();
  auto cfg = reinterpret_cast<StrFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
  auto core = reinterpret_cast<StrFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (cfg == nullptr) return "";
  return std::string(cfg()) + (core != nullptr ? std::string(" kernel=") + core() : "");
}

/// This process's CPU time (all threads), seconds.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

/// torch::mm [m, k] x [k, n] (float32): GFLOP/s over wall time (best of 3 timed blocks of
/// `reps` products) and GFLOP per CPU-second of this process over the same block (on a shared
/// machine the wall figure drops with the load, the CPU figure much less).
nlohmann::json matmul_gflops(int64_t m, int64_t k, int64_t n, int reps) {
  at::Tensor a = torch::randn({m, k}), b = torch::randn({k, n});
  torch::mm(a, b);
  double best = 1e30, best_cpu = 1e30;
  for (int r = 0; r < 3; ++r) {
    auto t = Clock::now();
    const double c = cpu_seconds();
    for (int i = 0; i < reps; ++i) torch::mm(a, b);
    best = std::min(best, secs(t));
    best_cpu = std::min(best_cpu, cpu_seconds() - c);
  }
  const double flop = double(reps) * 2.0 * double(m * k * n);
  return {{"gflops_wall", flop / best / 1e9}, {"gflop_per_cpu_s", flop / best_cpu / 1e9}};
}

}  // namespace

int main(int argc, char** argv) {
  int64_t patch = 64, batch = 4, steps = 3, volume = 128;
  int threads = 0;
  bool matmul_only = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    int64_t v = std::stoll(argv[i + 1]);
    if (a == "--patch") patch = v;
    else if (a == "--batch") batch = v;
    else if (a == "--steps") steps = v;
    else if (a == "--volume") volume = v;
    else if (a == "--threads") threads = int(v);
    else if (a == "--matmul-only") matmul_only = v != 0;
  }
  torch::manual_seed(0);
  nlohmann::json out;
  out["bench"] = "train";

  // BLAS: the library in use and matmul GFLOP/s at 1 and 2 threads (LibTorch and OpenBLAS
  // together). ViT-sized: the MLP of the default mae encoder on a batch of 8 subtomograms of
  // 32^3 (8 x 64 tokens of width 96 -> 384).
  {
    nlohmann::json blas;
    blas["libraries_mapped"] = blas_libraries_mapped();
    blas["openblas_config"] = openblas_config();
    // As this bench measured before threads were set: OpenBLAS's own default pool (one thread
    // per core unless OPENBLAS_NUM_THREADS says otherwise), whatever LibTorch's thread count.
    using GetFn = int (*)();
    auto get = reinterpret_cast<GetFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    blas["openblas_default_threads"] = get != nullptr ? get() : 0;
    blas["matmul_2048_openblas_default_threads"] = matmul_gflops(2048, 2048, 2048, 3);
    for (int t : {1, 2}) {
      torch::set_num_threads(t);
      const bool openblas = blas_threads_set(t) > 0;
      const std::string key = std::to_string(t) + (t == 1 ? "_thread" : "_threads");
      blas["matmul_1024_" + key] = matmul_gflops(1024, 1024, 1024, 4);
      blas["matmul_vit_512x96x384_" + key] = matmul_gflops(512, 96, 384, 200);
      blas["openblas_threads_set"] = openblas;
    }
    out["blas"] = blas;
  }
  if (matmul_only) {
    std::printf("%s\n", out.dump(1).c_str());
    return 0;
  }
  // The rest runs as unwedge does: LibTorch's threads, OpenBLAS at 1 thread.
  threads_set(threads);
  out["threads"] = torch::get_num_threads();
  out["patch"] = patch;
  out["batch"] = batch;

  auto method = method_create("n2n");
  auto* um = dynamic_cast<UNetMethod*>(method.get());
  const UNet3dOptions net_opts = um->net()->options();
  SamplerOptions so;
  so.patch = patch;
  so.val_fraction = 0;
  int64_t n = std::max(volume, patch);
  SampleSource src{torch::randn({n, n, n}), torch::randn({n, n, n}), {}, "bench"};
  SubtomoSampler sampler({src}, so);
  at::Generator gen = at::detail::createCPUGenerator(1);
  torch::optim::AdamW opt(method->parameters(), torch::optim::AdamWOptions(4e-4));
  const double step_flops = 3.0 * unet_forward_flops(net_opts, double(batch * patch * patch * patch));

  // A training step in each precision and layout. Times are wall and process CPU seconds (the
  // CPU figure is the one to compare on a loaded machine, with --threads 1).
  for (const char* precision : {"fp32", "bf16"}) {
    const c10::ScalarType dtype = precision_parse(precision, "precision");
    for (bool channels_last : {false, true}) {
      for (auto& p : method->parameters()) {
        if (p.dim() == 5) {
          p.set_data(channels_last ? p.contiguous(torch::MemoryFormat::ChannelsLast3d)
                                   : p.contiguous());
        }
      }
      double t_sample = 0, t_net = 0, c_step = 0;
      for (int64_t s = -1; s < steps; ++s) {  // step -1 warms up
        auto t0 = Clock::now();
        const double c0 = cpu_seconds();
        PatchBatch pb = sampler.extract(sampler.draw(batch, Split::train, gen));
        Batch b;
        b.input = pb.a;
        b.target = pb.b;
        if (channels_last) {
          b.input = b.input.contiguous(torch::MemoryFormat::ChannelsLast3d);
          b.target = b.target.contiguous(torch::MemoryFormat::ChannelsLast3d);
        }
        double ts = secs(t0);
        auto t1 = Clock::now();
        opt.zero_grad();
        at::Tensor loss;
        {
          AutocastGuard amp(dtype, c10::Device("cpu"));
          loss = method->loss(b).to(torch::kFloat);
        }
        loss.backward();
        opt.step();
        if (s >= 0) {
          t_sample += ts;
          t_net += secs(t1);
          c_step += cpu_seconds() - c0;
        }
      }
      nlohmann::json r;
      r["step_s"] = (t_sample + t_net) / double(steps);
      r["step_cpu_s"] = c_step / double(steps);
      r["outside_network_fraction"] = t_sample / (t_sample + t_net);
      r["network_gflops"] = step_flops / (t_net / double(steps)) / 1e9;
      out[std::string("step_") + (dtype == c10::kFloat ? "" : "bf16_") +
          (channels_last ? "channels_last_3d" : "default_layout")] = r;
    }
  }
  out["step_flops_estimate"] = step_flops;

  // Restoration of a volume^3 tomogram with the default tiles, in each precision.
  for (auto& p : method->parameters()) p.set_data(p.contiguous());
  at::Tensor vol = torch::randn({volume, volume, volume});
  for (const char* precision : {"fp32", "bf16"}) {
    RestoreOptions ro;
    ro.precision = precision;
    TilePlan plan = restore_plan(*method, {volume, volume, volume}, ro);
    auto t0 = Clock::now();
    const double c0 = cpu_seconds();
    restore_volume(*method, vol, ro);
    double total = secs(t0), total_cpu = cpu_seconds() - c0;
    at::Tensor tile = torch::randn({1, 1, plan.axes[0].tile, plan.axes[1].tile, plan.axes[2].tile});
    auto t1 = Clock::now();
    {
      torch::NoGradGuard no_grad;
      AutocastGuard amp(precision_parse(precision, "precision"), c10::Device("cpu"));
      for (int64_t i = 0; i < plan.num_tiles(); ++i) method->restore(tile);
    }
    double net = secs(t1);
    out[std::string("restore") + (std::string(precision) == "fp32" ? "" : "_bf16")] = {
        {"volume", volume},
        {"tile", plan.axes[0].tile},
        {"tiles", plan.num_tiles()},
        {"seconds", total},
        {"cpu_seconds", total_cpu},
        {"mvoxel_per_s", double(volume * volume * volume) / total / 1e6},
        {"mvoxel_per_cpu_s", double(volume * volume * volume) / total_cpu / 1e6},
        {"outside_network_fraction", std::max(0.0, 1.0 - net / total)}};
  }
  std::printf("%s\n", out.dump(1).c_str());
  return 0;
}
