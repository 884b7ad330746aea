// Training-step and restoration speed of the default n2n U-Net on this machine (JSON to stdout):
// step time (patch^3, batch B) split into sampling and network, achieved network GFLOP/s next to
// a measured matmul GFLOP/s, channels-last-3d vs the default layout, restoration Mvoxel/s and the
// fraction of restoration time spent outside the network.
// usage: bench_train [--patch 64] [--batch 4] [--steps 3] [--volume 128] [--threads 0]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

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

}  // namespace

int main(int argc, char** argv) {
  int64_t patch = 64, batch = 4, steps = 3, volume = 128;
  int threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    int64_t v = std::stoll(argv[i + 1]);
    if (a == "--patch") patch = v;
    else if (a == "--batch") batch = v;
    else if (a == "--steps") steps = v;
    else if (a == "--volume") volume = v;
    else if (a == "--threads") threads = int(v);
  }
  if (threads > 0) torch::set_num_threads(threads);
  torch::manual_seed(0);
  nlohmann::json out;
  out["bench"] = "train";
  out["threads"] = torch::get_num_threads();
  out["patch"] = patch;
  out["batch"] = batch;

  // Machine reference: float32 matmul.
  {
    at::Tensor a = torch::randn({2048, 2048}), b = torch::randn({2048, 2048});
    torch::mm(a, b);
    auto t = Clock::now();
    for (int i = 0; i < 3; ++i) torch::mm(a, b);
    out["matmul_gflops"] = 3 * 2.0 * 2048.0 * 2048.0 * 2048.0 / secs(t) / 1e9;
  }

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

  for (bool channels_last : {false, true}) {
    if (channels_last) {
      for (auto& p : method->parameters()) {
        if (p.dim() == 5) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast3d));
      }
    }
    double t_sample = 0, t_net = 0;
    for (int64_t s = -1; s < steps; ++s) {  // step -1 warms up
      auto t0 = Clock::now();
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
      method->loss(b).backward();
      opt.step();
      if (s >= 0) {
        t_sample += ts;
        t_net += secs(t1);
      }
    }
    nlohmann::json r;
    r["step_s"] = (t_sample + t_net) / double(steps);
    r["outside_network_fraction"] = t_sample / (t_sample + t_net);
    r["network_gflops"] = step_flops / (t_net / double(steps)) / 1e9;
    out[channels_last ? "step_channels_last_3d" : "step_default_layout"] = r;
  }
  out["step_flops_estimate"] = step_flops;

  // Restoration of a volume^3 tomogram with the default tiles.
  {
    for (auto& p : method->parameters()) p.set_data(p.contiguous());
    at::Tensor vol = torch::randn({volume, volume, volume});
    RestoreOptions ro;
    ro.progress = false;
    TilePlan plan = restore_plan(*method, {volume, volume, volume}, ro);
    auto t0 = Clock::now();
    restore_volume(*method, vol, ro);
    double total = secs(t0);
    at::Tensor tile = torch::randn({1, 1, plan.axes[0].tile, plan.axes[1].tile, plan.axes[2].tile});
    auto t1 = Clock::now();
    for (int64_t i = 0; i < plan.num_tiles(); ++i) method->restore(tile);
    double net = secs(t1);
    out["restore"] = {{"volume", volume},
                      {"tile", plan.axes[0].tile},
                      {"tiles", plan.num_tiles()},
                      {"seconds", total},
                      {"mvoxel_per_s", double(volume * volume * volume) / total / 1e6},
                      {"outside_network_fraction", std::max(0.0, 1.0 - net / total)}};
  }
  std::printf("%s\n", out.dump(1).c_str());
  return 0;
}
