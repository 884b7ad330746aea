#include "unwedge/methods/aux_sync.h"

#include <torch/optim/optimizer.h>

namespace unwedge {

namespace {
thread_local AuxGradSyncFn t_sync;
}  // namespace

void aux_grad_sync_set(AuxGradSyncFn fn) { t_sync = std::move(fn); }

bool aux_grad_sync_active() { return static_cast<bool>(t_sync); }

void aux_grad_sync(const std::vector<torch::Tensor>& params) {
  if (!t_sync) return;
  std::vector<torch::Tensor> grads;
  grads.reserve(params.size());
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (!grads.empty()) t_sync(grads);
}

std::vector<torch::Tensor> optimizer_parameters(torch::optim::Optimizer& opt) {
  std::vector<torch::Tensor> out;
  for (auto& g : opt.param_groups()) {
    for (const auto& p : g.params()) out.push_back(p);
  }
  return out;
}

AuxGradSyncScope::AuxGradSyncScope(AuxGradSyncFn fn) : previous_(std::move(t_sync)) {
  t_sync = std::move(fn);
}

AuxGradSyncScope::~AuxGradSyncScope() { t_sync = std::move(previous_); }

}  // namespace unwedge
