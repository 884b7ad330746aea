// Synchronisation of auxiliary networks across data-parallel ranks. A method that updates an
// auxiliary network inside its own loss() (cryogen-map's discriminator, cryogen-ot's encoder)
// calls aux_grad_sync() on that network's parameters right before its optimizer steps; the
// trainer installs a sync function (gradient all-reduce) while it runs distributed. Without one
// installed (a single process) aux_grad_sync() does nothing. The function is per thread: ranks
// that run as threads of one process (tests) each install their own.
#pragma once
#include <functional>
#include <vector>

#include <torch/types.h>

namespace torch::optim {
class Optimizer;
}

namespace unwedge {

/// Averages the given gradients across ranks in place.
using AuxGradSyncFn = std::function<void(std::vector<torch::Tensor>&)>;

/// Installs `fn` for this thread (an empty function clears it).
void aux_grad_sync_set(AuxGradSyncFn fn);
/// True while this thread has a sync function installed.
bool aux_grad_sync_active();
/// Averages the defined .grad() of `params` across ranks through the installed function;
/// a no-op when none is installed. Every rank must call it at the same point with the same
/// parameters (the same network).
void aux_grad_sync(const std::vector<torch::Tensor>& params);
/// The parameters of every param group of `opt`, in order.
std::vector<torch::Tensor> optimizer_parameters(torch::optim::Optimizer& opt);

/// Installs a sync function for its lifetime (restoring the previous one when it ends).
class AuxGradSyncScope {
 public:
  explicit AuxGradSyncScope(AuxGradSyncFn fn);
  ~AuxGradSyncScope();
  AuxGradSyncScope(const AuxGradSyncScope&) = delete;
  AuxGradSyncScope& operator=(const AuxGradSyncScope&) = delete;

 private:
  AuxGradSyncFn previous_;
};

}  // namespace unwedge
