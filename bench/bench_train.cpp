// Training-step and restoration speed of the default n2n U-Net on this machine (JSON to stdout):
// step time (patch^3, batch B) split into time outside the network (sampling and batch assembly,
// n2n's swap and wedge-keeping rotations; measured) and the network (forward, backward, clipping,
// AdamW), the network's GFLOP per CPU-second against the FLOPs counted from the layer shapes and
// against a roofline (the best measured GFLOP per CPU-second of one large 3^3 convolution,
// forward and forward+backward), channels-last-3d vs the default layout, each in fp32 and in
// bf16 autocast, restoration Mvoxel/s in both precisions and the fraction of restoration time
// spent outside the network, and with --thread-scaling 1 the step and the restoration at 1 and 2
// threads. First the BLAS: which library the process mapped (/proc/self/maps), OpenBLAS's
// kernel, and matmul GFLOP/s (1024^2 and ViT-sized) at 1 and 2 threads of both LibTorch and
// OpenBLAS (a single torch::mm is one BLAS call: its threads are OpenBLAS's own, not LibTorch's).
// bench/efficiency.sh runs it next to the PyTorch reference bench/unet_ref.py.
// usage: bench_train [--patch 64] [--batch 4] [--steps 3] [--repeats 1] [--volume 128]
//                    [--threads 0] [--roofline 1] [--channels-last 1] [--thread-scaling 0]
//                    [--matmul-only 0] [--steps-only 0]
#include <dlfcn.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
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
#include "unwedge/methods/augment.h"
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

/// The parameters of `method` (its 5-dimensional ones) in channels-last-3d or the default layout.
void set_layout(Method& method, bool channels_last) {
  for (auto& p : method.parameters()) {
    if (p.dim() == 5) {
      p.set_data(channels_last ? p.contiguous(torch::MemoryFormat::ChannelsLast3d) : p.contiguous());
    }
  }
}

/// Forward and forward+backward GFLOP per CPU-second of one 3^3 convolution, C -> C channels
/// with bias, on [B, C, S, S, S] ("same" padding), in `dtype`
/// (bf16: autocast, as the training step runs), for a few shapes; the best of each is the
/// roofline the network is compared with. Each figure is the best of `repeats` timed calls.
nlohmann::json conv_roofline(c10::ScalarType dtype, int64_t repeats) {
  struct Shape {
    int64_t c, s, b;
  };
  nlohmann::json shapes = nlohmann::json::array();
  double best_f = 0, best_fb = 0;
  // Large volumes (48^3, beyond the caches) and cache-sized ones (16^3-24^3 x 4, ~4-14 MB of
  // activations), which run fastest on this machine's CPU (~20 % above the large ones).
  for (Shape sh : {Shape{32, 48, 4}, Shape{64, 48, 2}, Shape{32, 20, 4}, Shape{64, 16, 4},
                   Shape{64, 24, 4}}) {
    at::Tensor w = torch::randn({sh.c, sh.c, 3, 3, 3}).mul_(0.05).requires_grad_(true);
    at::Tensor bias = torch::zeros({sh.c}).requires_grad_(true);
    at::Tensor x = torch::randn({sh.b, sh.c, sh.s, sh.s, sh.s}).requires_grad_(true);
    const double flop = 2.0 * 27.0 * double(sh.c * sh.c) * double(sh.b * sh.s * sh.s * sh.s);
    namespace F = torch::nn::functional;
    auto conv = [&] {
      AutocastGuard amp(dtype, c10::Device("cpu"));
      return F::conv3d(x, w, F::Conv3dFuncOptions().bias(bias).padding(1));
    };
    double f = 1e30, fb = 1e30;
    for (int64_t r = -1; r < repeats; ++r) {  // r = -1 warms up
      double c0 = cpu_seconds();
      {
        torch::NoGradGuard no_grad;
        conv();
      }
      double c1 = cpu_seconds();
      at::Tensor y = conv();
      y.to(torch::kFloat).sum().backward();  // grad of input, weight and bias: ~3x the forward
      double c2 = cpu_seconds();
      if (r >= 0) {
        f = std::min(f, c1 - c0);
        fb = std::min(fb, c2 - c1);
      }
      w.mutable_grad() = at::Tensor();
      bias.mutable_grad() = at::Tensor();
      x.mutable_grad() = at::Tensor();
    }
    const double gf = flop / f / 1e9, gfb = 3.0 * flop / fb / 1e9;
    shapes.push_back({{"channels", sh.c}, {"size", sh.s}, {"batch", sh.b},
                      {"fwd_gflop_per_cpu_s", gf}, {"fwd_bwd_gflop_per_cpu_s", gfb}});
    best_f = std::max(best_f, gf);
    best_fb = std::max(best_fb, gfb);
  }
  return {{"fwd_gflop_per_cpu_s", best_f}, {"fwd_bwd_gflop_per_cpu_s", best_fb}, {"shapes", shapes}};
}

/// What one timed training step needs.
struct StepBench {
  Method& method;
  SubtomoSampler& sampler;
  at::Generator& gen;
  torch::optim::Optimizer& opt;
  int64_t batch, steps, repeats;
  double step_flops;  ///< forward + backward FLOPs of one step (estimate from the shapes)
};

/// Training steps as the trainer takes them (sample, batch, the method's loss under autocast,
/// backward, gradient clipping at 1, AdamW), in `repeats` blocks of `steps` steps after one
/// warm-up step; the block with the least CPU time is reported. Time outside the network is
/// measured, in process CPU seconds: the sampling and batch assembly inside each step, and the
/// work n2n's loss does before the U-Net (swap of the halves and the wedge-keeping cube
/// rotation per sample, AugmentMode::wedge) timed on the same batch right after each step.
nlohmann::json step_bench(StepBench& sb, c10::ScalarType dtype, bool channels_last) {
  set_layout(sb.method, channels_last);
  nlohmann::json blocks = nlohmann::json::array();
  nlohmann::json best;
  for (int64_t r = 0; r < sb.repeats; ++r) {
    double t_step = 0, c_step = 0, c_sample = 0, c_pre = 0;
    for (int64_t s = r == 0 ? -1 : 0; s < sb.steps; ++s) {  // step -1 warms up
      auto t0 = Clock::now();
      const double c0 = cpu_seconds();
      PatchBatch pb = sb.sampler.extract(sb.sampler.draw(sb.batch, Split::train, sb.gen));
      Batch b;
      b.input = pb.a;
      b.target = pb.b;
      if (channels_last) {
        b.input = b.input.contiguous(torch::MemoryFormat::ChannelsLast3d);
        b.target = b.target.contiguous(torch::MemoryFormat::ChannelsLast3d);
      }
      const double c1 = cpu_seconds();
      sb.opt.zero_grad();
      at::Tensor loss;
      {
        AutocastGuard amp(dtype, c10::Device("cpu"));
        loss = sb.method.loss(b).to(torch::kFloat);
      }
      loss.item<double>();
      loss.backward();
      torch::nn::utils::clip_grad_norm_(sb.method.parameters(), 1.0);
      sb.opt.step();
      const double c2 = cpu_seconds();
      const double t2 = secs(t0);
      // n2n's own work before its U-Net, on this batch (as in its loss: swap, then augment).
      {
        AutocastGuard amp(dtype, c10::Device("cpu"));
        auto sw = torch::randint(2, {b.input.size(0), 1, 1, 1, 1}, torch::kLong).to(torch::kBool);
        auto in = torch::where(sw, b.target, b.input);
        auto tg = torch::where(sw, b.input, b.target);
        auto aug = augment_about_tilt_axis({in, tg, {}}, AugmentMode::wedge, WedgeGeometry{});
        aug[1].sum().item<double>();
      }
      const double c3 = cpu_seconds();
      if (s >= 0) {
        t_step += t2;
        c_step += c2 - c0;
        c_sample += c1 - c0;
        c_pre += c3 - c2;
      }
    }
    const double k = double(sb.steps);
    const double net_cpu = (c_step - c_sample - c_pre) / k;
    nlohmann::json r_json = {{"step_s", t_step / k},
                             {"step_cpu_s", c_step / k},
                             {"sample_cpu_s", c_sample / k},
                             {"augment_cpu_s", c_pre / k},
                             {"network_cpu_s", net_cpu},
                             {"outside_network_fraction", (c_sample + c_pre) / c_step},
                             {"network_gflop_per_cpu_s", sb.step_flops / net_cpu / 1e9}};
    blocks.push_back(r_json);
    if (best.is_null() || r_json["step_cpu_s"].get<double>() < best["step_cpu_s"].get<double>()) {
      best = r_json;
    }
  }
  best["blocks_step_cpu_s"] = nlohmann::json::array();
  for (const auto& b : blocks) best["blocks_step_cpu_s"].push_back(b["step_cpu_s"]);
  return best;
}

/// Restoration of a volume^3 random tomogram with the default tiles in `precision`: wall and
/// CPU seconds, Mvoxel/s, and the fraction of the time spent outside the network (the tiles'
/// network passes timed again on their own).
nlohmann::json restore_bench(Method& method, int64_t volume, const char* precision) {
  at::Tensor vol = torch::randn({volume, volume, volume});
  RestoreOptions ro;
  ro.precision = precision;
  TilePlan plan = restore_plan(method, {volume, volume, volume}, ro);
  auto t0 = Clock::now();
  const double c0 = cpu_seconds();
  restore_volume(method, vol, ro);
  double total = secs(t0), total_cpu = cpu_seconds() - c0;
  at::Tensor tile = torch::randn({1, 1, plan.axes[0].tile, plan.axes[1].tile, plan.axes[2].tile});
  auto t1 = Clock::now();
  {
    torch::NoGradGuard no_grad;
    AutocastGuard amp(precision_parse(precision, "precision"), c10::Device("cpu"));
    for (int64_t i = 0; i < plan.num_tiles(); ++i) method.restore(tile);
  }
  double net = secs(t1);
  return {{"volume", volume},
          {"tile", plan.axes[0].tile},
          {"tiles", plan.num_tiles()},
          {"seconds", total},
          {"cpu_seconds", total_cpu},
          {"mvoxel_per_s", double(volume * volume * volume) / total / 1e6},
          {"mvoxel_per_cpu_s", double(volume * volume * volume) / total_cpu / 1e6},
          {"outside_network_fraction", std::max(0.0, 1.0 - net / total)}};
}

}  // namespace

int main(int argc, char** argv) {
  int64_t patch = 64, batch = 4, steps = 3, volume = 128, repeats = 1;
  int threads = 0;
  bool matmul_only = false, roofline = true, layouts = true, scaling = false, steps_only = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    int64_t v = std::stoll(argv[i + 1]);
    if (a == "--patch") patch = v;
    else if (a == "--batch") batch = v;
    else if (a == "--steps") steps = v;
    else if (a == "--volume") volume = v;
    else if (a == "--threads") threads = int(v);
    else if (a == "--matmul-only") matmul_only = v != 0;
    else if (a == "--repeats") repeats = std::max<int64_t>(1, v);
    else if (a == "--roofline") roofline = v != 0;
    else if (a == "--channels-last") layouts = v != 0;
    else if (a == "--thread-scaling") scaling = v != 0;
    else if (a == "--steps-only") steps_only = v != 0;
    else {
      std::fprintf(stderr, "bench_train: unknown option %s\n", a.c_str());
      return 1;
    }
  }
  torch::manual_seed(0);
  nlohmann::json out;
  out["bench"] = "train";

  // BLAS: the library in use and matmul GFLOP/s at 1 and 2 threads (LibTorch and OpenBLAS
  // together). ViT-sized: the MLP of the default mae encoder on a batch of 8 subtomograms of
  // 32^3 (8 x 64 tokens of width 96 -> 384).
  if (!steps_only) {
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
  // The rest runs as unwedge does: LibTorch's threads, OpenBLAS at 1 thread. --steps-only: the
  // training steps in the default layout alone (bench/efficiency.sh alternates such runs with
  // the PyTorch reference).
  if (steps_only) roofline = layouts = scaling = false;
  threads_set(threads);
  out["threads"] = torch::get_num_threads();
  out["patch"] = patch;
  out["batch"] = batch;

  auto method = method_create("n2n");
  auto* um = dynamic_cast<UNetMethod*>(method.get());
  const UNet3dOptions net_opts = um->net()->options();
  int64_t params = 0;
  for (const auto& p : method->parameters()) params += p.numel();
  out["parameters"] = params;
  SamplerOptions so;
  so.patch = patch;
  so.val_fraction = 0;
  int64_t n = std::max(volume, patch);
  SampleSource src{torch::randn({n, n, n}), torch::randn({n, n, n}), {}, "bench"};
  SubtomoSampler sampler({src}, so);
  at::Generator gen = at::detail::createCPUGenerator(1);
  // As the trainer makes it (TrainOptions' defaults: AdamW, lr 4e-4, weight decay 1e-4, clip 1).
  torch::optim::AdamW opt(method->parameters(), torch::optim::AdamWOptions(4e-4).weight_decay(1e-4));
  const double step_flops = 3.0 * unet_forward_flops(net_opts, double(batch * patch * patch * patch));
  out["step_flops_estimate"] = step_flops;
  StepBench sb{*method, sampler, gen, opt, batch, steps, repeats, step_flops};

  // Roofline: the best of a few large 3D convolutions, in each precision.
  nlohmann::json roof;
  if (roofline) {
    for (const char* precision : {"fp32", "bf16"}) {
      roof[precision] = conv_roofline(precision_parse(precision, "precision"), repeats);
    }
    out["roofline"] = roof;
  }

  // A training step in each precision and layout. Times are wall and process CPU seconds (the
  // CPU figure is the one to compare on a loaded machine, with --threads 1).
  for (const char* precision : {"fp32", "bf16"}) {
    const c10::ScalarType dtype = precision_parse(precision, "precision");
    for (bool channels_last : {false, true}) {
      if (channels_last && !layouts) continue;
      nlohmann::json r = step_bench(sb, dtype, channels_last);
      if (roofline) {
        r["roofline_fraction"] = r["network_gflop_per_cpu_s"].get<double>() /
                                 roof[precision]["fwd_bwd_gflop_per_cpu_s"].get<double>();
      }
      out[std::string("step_") + (dtype == c10::kFloat ? "" : "bf16_") +
          (channels_last ? "channels_last_3d" : "default_layout")] = r;
    }
  }
  set_layout(*method, false);

  // Restoration of a volume^3 tomogram with the default tiles, in each precision.
  for (const char* precision : {"fp32", "bf16"}) {
    if (steps_only) break;
    out[std::string("restore") + (std::string(precision) == "fp32" ? "" : "_bf16")] =
        restore_bench(*method, volume, precision);
  }

  // Thread scaling: the step and the restoration (default layout) at 1 and 2 LibTorch threads.
  if (scaling) {
    nlohmann::json sc;
    for (int t : {1, 2}) {
      threads_set(t);
      const std::string key = std::to_string(t) + (t == 1 ? "_thread" : "_threads");
      for (const char* precision : {"fp32", "bf16"}) {
        nlohmann::json s = step_bench(sb, precision_parse(precision, "precision"), false);
        nlohmann::json r = restore_bench(*method, volume, precision);
        sc[std::string(precision) + "_" + key] = {
            {"step_s", s["step_s"]},           {"step_cpu_s", s["step_cpu_s"]},
            {"restore_seconds", r["seconds"]}, {"restore_cpu_seconds", r["cpu_seconds"]},
            {"restore_mvoxel_per_s", r["mvoxel_per_s"]}};
      }
    }
    for (const char* precision : {"fp32", "bf16"}) {
      const auto& one = sc[std::string(precision) + "_1_thread"];
      const auto& two = sc[std::string(precision) + "_2_threads"];
      sc[std::string(precision) + "_speedup_2_vs_1"] = {
          {"step_wall", one["step_s"].get<double>() / two["step_s"].get<double>()},
          {"restore_wall",
           one["restore_seconds"].get<double>() / two["restore_seconds"].get<double>()}};
    }
    threads_set(threads);
    out["thread_scaling"] = sc;
  }
  std::printf("%s\n", out.dump(1).c_str());
  return 0;
}
