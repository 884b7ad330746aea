#include "unwedge/dist/distributed.h"

// Debian's and upstream LibTorch build c10d with Gloo; the header needs the flag to expose it,
// and Gloo's own headers (libgloo-dev), which PyTorch wheels do not ship: without them (or with
// -DUNWEDGE_GLOO=OFF) the build has NCCL only.
#if !defined(UNWEDGE_NO_GLOO) && __has_include(<gloo/algorithm.h>)
#define UNWEDGE_HAVE_GLOO 1
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#endif
#include <ATen/ATen.h>
#ifdef UNWEDGE_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef UNWEDGE_HAVE_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/cuda.h>
#include <torch/version.h>

#include <cstdlib>
#include <cstring>
#include <functional>

#include "unwedge/core/error.h"
#include "unwedge/core/log.h"

extern char** environ;

namespace unwedge {

namespace {

const std::string* env_get(const std::map<std::string, std::string>& env, const std::string& k) {
  auto it = env.find(k);
  return it == env.end() || it->second.empty() ? nullptr : &it->second;
}

int env_int(const std::map<std::string, std::string>& env, const std::string& k, int fallback) {
  const std::string* v = env_get(env, k);
  if (!v) return fallback;
  try {
    size_t used = 0;
    int x = std::stoi(*v, &used);
    if (used != v->size()) throw std::invalid_argument("trailing characters");
    return x;
  } catch (const std::exception&) {
    throw ValueError("environment variable " + k + "=" + *v + " is not an integer");
  }
}

// First host of a SLURM node list: "gpu[003-010,012],cpu1" -> "gpu003".
std::string slurm_first_host(const std::string& list) {
  size_t bracket = list.find('[');
  size_t comma = list.find(',');
  if (bracket == std::string::npos || (comma != std::string::npos && comma < bracket)) {
    return list.substr(0, comma);
  }
  std::string prefix = list.substr(0, bracket);
  size_t end = list.find_first_of("-,]", bracket + 1);
  return prefix + list.substr(bracket + 1, end - bracket - 1);
}

}  // namespace

DistConfig dist_config_from_env(const std::map<std::string, std::string>& env) {
  DistConfig cfg;
  if (env_get(env, "WORLD_SIZE") || env_get(env, "RANK")) {
    cfg.launcher = "torchrun";
    cfg.rank = env_int(env, "RANK", 0);
    cfg.world_size = env_int(env, "WORLD_SIZE", 1);
    cfg.local_rank = env_int(env, "LOCAL_RANK", cfg.rank);
  } else if (env_get(env, "SLURM_NTASKS") && env_get(env, "SLURM_PROCID")) {
    cfg.launcher = "slurm";
    cfg.rank = env_int(env, "SLURM_PROCID", 0);
    cfg.world_size = env_int(env, "SLURM_NTASKS", 1);
    cfg.local_rank = env_int(env, "SLURM_LOCALID", 0);
    if (const std::string* nodes = env_get(env, "SLURM_JOB_NODELIST")) {
      cfg.master_addr = slurm_first_host(*nodes);
    }
  }
  if (const std::string* addr = env_get(env, "MASTER_ADDR")) cfg.master_addr = *addr;
  cfg.master_port = env_int(env, "MASTER_PORT", cfg.master_port);
  if (cfg.world_size < 1) {
    throw ValueError("world size " + std::to_string(cfg.world_size) + " must be at least 1");
  }
  if (cfg.rank < 0 || cfg.rank >= cfg.world_size) {
    throw ValueError("rank " + std::to_string(cfg.rank) + " is outside [0, " +
                     std::to_string(cfg.world_size) + ")");
  }
  if (cfg.master_port <= 0 || cfg.master_port > 65535) {
    throw ValueError("MASTER_PORT=" + std::to_string(cfg.master_port) + " is not a TCP port");
  }
  return cfg;
}

DistConfig dist_config_from_environ() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return dist_config_from_env(env);
}

bool dist_have_nccl() {
#ifdef UNWEDGE_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

bool dist_have_gloo() {
#ifdef UNWEDGE_HAVE_GLOO
  return true;
#else
  return false;
#endif
}

std::string dist_backend_for(const c10::Device& device) {
  return device.is_cuda() && dist_have_nccl() ? "nccl" : "gloo";
}

// LibTorch 2 made Gloo and NCCL backends (c10d::Backend) of a ProcessGroup; 1.x made them
// ProcessGroups. Both offer the collectives used here with the same signatures.
#if TORCH_VERSION_MAJOR >= 2
using CollectiveGroup = c10d::Backend;
#else
using CollectiveGroup = c10d::ProcessGroup;
#endif

struct Distributed::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<CollectiveGroup> pg;
  std::chrono::milliseconds timeout{0};
  c10::Device device{c10::kCPU};  ///< where collectives' tensors live (NCCL: this rank's GPU)

  void wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
    try {
      work->wait(timeout);
    } catch (const std::exception& e) {
      throw IoError("distributed " + what + " failed (a rank died or timed out): " +
                    std::string(e.what()).substr(0, 300));
    }
  }
};

Distributed::Distributed(const DistConfig& cfg) : cfg_(cfg) {
  if (!cfg_.distributed()) return;
  if (!((cfg_.backend == "gloo" && dist_have_gloo()) ||
        (cfg_.backend == "nccl" && dist_have_nccl()))) {
    std::string available = dist_have_gloo() ? "gloo" : "";
    if (dist_have_nccl()) available += available.empty() ? "nccl" : ", nccl";
    throw ValueError("distributed backend '" + cfg_.backend + "' is not available in this build "
                     "(available: " + (available.empty() ? "none" : available) + ")");
  }
  impl_ = std::make_unique<Impl>();
  impl_->timeout = std::chrono::milliseconds(int64_t(cfg_.timeout_s * 1000));
  c10d::TCPStoreOptions so;
  so.port = uint16_t(cfg_.master_port);
  so.isServer = cfg_.rank == 0;
  so.numWorkers = size_t(cfg_.world_size);
  so.waitWorkers = true;
  so.timeout = impl_->timeout;
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(cfg_.master_addr, so);
#ifdef UNWEDGE_HAVE_NCCL
    if (cfg_.backend == "nccl") {
      if (!torch::cuda::is_available()) {
        throw ValueError("distributed backend nccl needs a CUDA device, and none is visible");
      }
      impl_->device = c10::Device(c10::kCUDA, c10::DeviceIndex(
                                                  cfg_.local_rank % int(torch::cuda::device_count())));
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = impl_->timeout;
      impl_->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, cfg_.rank,
                                                              cfg_.world_size, opts);
    }
#endif
#ifdef UNWEDGE_HAVE_GLOO
    if (!impl_->pg) {
      auto opts = c10d::ProcessGroupGloo::Options::create(impl_->timeout);
      // On one machine bind to loopback; across nodes, to the interface of this host's name.
      bool loopback = cfg_.master_addr == "127.0.0.1" || cfg_.master_addr == "localhost";
      opts->devices.push_back(loopback
                                  ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                  : c10d::ProcessGroupGloo::createDefaultDevice());
      impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, cfg_.rank,
                                                              cfg_.world_size, opts);
    }
#endif
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw IoError("rank " + std::to_string(cfg_.rank) + ": cannot join " + cfg_.master_addr +
                  ":" + std::to_string(cfg_.master_port) + " (world size " +
                  std::to_string(cfg_.world_size) + ", " + cfg_.backend + "): " +
                  std::string(e.what()).substr(0, 300));
  }
  log_debug("rank {}/{} joined {}:{} ({})", cfg_.rank, cfg_.world_size, cfg_.master_addr,
            cfg_.master_port, cfg_.backend);
}

Distributed::~Distributed() = default;

void Distributed::allreduce_mean(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  if (!cfg_.distributed()) return;
  size_t i = 0;
  while (i < tensors.size()) {
    // Pack consecutive tensors of one dtype and device into a flat bucket.
    std::vector<at::Tensor> bucket;
    int64_t bytes = 0;
    while (i < tensors.size() &&
           (bucket.empty() ||
            (bytes + tensors[i].nbytes() <= size_t(bucket_bytes) &&
             tensors[i].scalar_type() == bucket[0].scalar_type() &&
             tensors[i].device() == bucket[0].device()))) {
      bucket.push_back(tensors[i]);
      bytes += int64_t(tensors[i].nbytes());
      ++i;
    }
    std::vector<at::Tensor> flat_parts;
    flat_parts.reserve(bucket.size());
    for (const auto& t : bucket) flat_parts.push_back(t.reshape({-1}));
    std::vector<at::Tensor> flat{at::cat(flat_parts).to(impl_->device)};  // [sum of numels]
    impl_->wait(impl_->pg->allreduce(flat), "all-reduce");
    flat[0].div_(cfg_.world_size);
    int64_t offset = 0;
    for (auto& t : bucket) {
      int64_t n = t.numel();
      t.copy_(flat[0].narrow(0, offset, n).view_as(t));
      offset += n;
    }
  }
}

void Distributed::broadcast(const std::vector<at::Tensor>& tensors, int root) {
  if (!cfg_.distributed() || tensors.empty()) return;
  std::vector<at::Tensor> parts;
  for (const auto& t : tensors) {
    if (t.scalar_type() != tensors[0].scalar_type()) {
      throw ValueError("broadcast: tensors of mixed types");
    }
    parts.push_back(t.detach().reshape({-1}));
  }
  std::vector<at::Tensor> flat{at::cat(parts).to(impl_->device)};
  c10d::BroadcastOptions opts;
  opts.rootRank = root;
  impl_->wait(impl_->pg->broadcast(flat, opts), "broadcast");
  int64_t offset = 0;
  for (const auto& t : tensors) {
    int64_t n = t.numel();
    at::NoGradGuard no_grad;
    const_cast<at::Tensor&>(t).copy_(flat[0].narrow(0, offset, n).view_as(t));
    offset += n;
  }
}

void Distributed::barrier() {
  if (!cfg_.distributed()) return;
  impl_->wait(impl_->pg->barrier(), "barrier");
}

void Distributed::check_same(const std::string& what, const std::string& value) {
  if (!cfg_.distributed()) return;
  const double h = double(std::hash<std::string>{}(value) & 0xFFFFFFFFFFFFULL);  // exact in double
  std::vector<double> all = allgather({h});
  for (int r = 0; r < cfg_.world_size; ++r) {
    if (all[size_t(r)] != all[0]) {
      throw ValueError("ranks disagree on " + what + ": rank " + std::to_string(r) +
                       " differs from rank 0");
    }
  }
}

std::string Distributed::broadcast_string(const std::string& value, int root) {
  if (!cfg_.distributed()) return value;
  at::Tensor n = at::full({1}, int64_t(value.size()), at::kLong);
  broadcast({n}, root);
  const int64_t len = n.item<int64_t>();
  at::Tensor bytes = at::zeros({std::max<int64_t>(len, 1)}, at::kByte);
  if (cfg_.rank == root) {
    std::memcpy(bytes.data_ptr<uint8_t>(), value.data(), value.size());
  }
  broadcast({bytes}, root);
  return std::string(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), size_t(len));
}

std::vector<double> Distributed::allgather(const std::vector<double>& values) {
  if (!cfg_.distributed()) return values;
  const int64_t n = int64_t(values.size());
  std::vector<at::Tensor> input{
      at::from_blob(const_cast<double*>(values.data()), {n}, at::kDouble).clone().to(impl_->device)};
  std::vector<std::vector<at::Tensor>> output(1);
  for (int r = 0; r < cfg_.world_size; ++r) {
    output[0].push_back(at::zeros({n}, at::TensorOptions(at::kDouble).device(impl_->device)));
  }
  impl_->wait(impl_->pg->allgather(output, input), "all-gather");
  std::vector<double> out;
  out.reserve(size_t(n * cfg_.world_size));
  for (int r = 0; r < cfg_.world_size; ++r) {
    at::Tensor t = output[0][size_t(r)].to(at::kCPU).contiguous();
    out.insert(out.end(), t.data_ptr<double>(), t.data_ptr<double>() + n);
  }
  return out;
}

}  // namespace unwedge
