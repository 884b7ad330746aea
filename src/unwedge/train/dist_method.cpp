#include "unwedge/train/dist_method.h"

namespace unwedge {

void dist_broadcast_method(Distributed& dist, Method& method) {
  dist.broadcast(method.parameters());
  for (auto* aux : method.aux_optimizers()) dist.broadcast(optimizer_parameters(*aux));
}

DistAuxSync::DistAuxSync(Distributed& dist)
    : scope_([d = &dist](std::vector<torch::Tensor>& grads) { d->allreduce_mean(grads); }) {}

}  // namespace unwedge
