// Data-parallel training across ranks through torch.distributed's c10d (Gloo on CPU, NCCL on
// GPU when LibTorch has it), started like torchrun (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE,
// LOCAL_RANK) or by SLURM (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID).
#pragma once
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace unwedge {

/// Where this process sits among the ranks, and how to reach rank 0.
struct DistConfig {
  int rank = 0;                         ///< global rank
  int world_size = 1;                   ///< number of ranks
  int local_rank = 0;                   ///< rank on this node (selects cuda:local_rank)
  std::string master_addr = "127.0.0.1";  ///< host of rank 0's TCP store
  int master_port = 29500;              ///< port of rank 0's TCP store
  std::string backend = "gloo";         ///< gloo (CPU tensors) or nccl (CUDA tensors)
  double timeout_s = 300;               ///< collectives and rendezvous fail after this long
  std::string launcher = "none";        ///< torchrun, slurm or none (single process)

  bool distributed() const { return world_size > 1; }
};

/// Reads a configuration from an environment given as a map (testable); torchrun's variables win
/// over SLURM's. Throws ValueError for malformed or inconsistent values, naming the variable.
DistConfig dist_config_from_env(const std::map<std::string, std::string>& env);
/// The same from the process environment.
DistConfig dist_config_from_environ();

/// True when this build links LibTorch's NCCL process group (CMake found it: UNWEDGE_HAVE_NCCL).
bool dist_have_nccl();
/// True when this build has LibTorch's Gloo process group (Gloo's headers were found and
/// UNWEDGE_GLOO was not switched off).
bool dist_have_gloo();
/// The backend for a device: nccl for CUDA when the build has it, else gloo (which also reduces
/// CUDA tensors, through host copies).
std::string dist_backend_for(const c10::Device& device);

/// A process group of `world_size` ranks. With world_size 1 every collective is a no-op.
class Distributed {
 public:
  explicit Distributed(const DistConfig& cfg);
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  int rank() const { return cfg_.rank; }
  int world_size() const { return cfg_.world_size; }
  bool is_main() const { return cfg_.rank == 0; }
  const DistConfig& config() const { return cfg_; }

  /// Averages tensors (gradients) across ranks in place. Tensors are packed into flat buckets of
  /// at most `bucket_bytes` so that a network with many small parameters costs few messages.
  void allreduce_mean(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes = 25 << 20);
  /// Copies rank `root`'s tensors to every rank (initial weights, auxiliary networks).
  void broadcast(const std::vector<at::Tensor>& tensors, int root = 0);
  /// Waits for every rank.
  void barrier();
  /// Checks that every rank holds the same `value` for `what` (e.g. the resolved configuration);
  /// throws ValueError naming the first rank that differs.
  void check_same(const std::string& what, const std::string& value);
  /// Rank `root`'s string on every rank (e.g. the temporary name of a shared output file).
  std::string broadcast_string(const std::string& value, int root = 0);
  /// Every rank's `values` (each rank the same count), concatenated in rank order.
  std::vector<double> allgather(const std::vector<double>& values);

 private:
  struct Impl;
  DistConfig cfg_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace unwedge
