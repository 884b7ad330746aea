#include "unwedge/train/dist_method.h"

namespace unwedge {

void dist_broadcast_method(Distributed& dist, Method& method) {
  dist.broadcast(method.parameters());
  for (auto* aux : method.aux_optimizers()) dist.broadcast(optimizer_parameters(*aux));
}

StepContext dist_step_context(Distributed& dist) {
  StepContext ctx;
  if (dist.world_size() > 1) {
    ctx.average_gradients = [d = &dist](std::vector<torch::Tensor>& grads) {
      d->allreduce_mean(grads);
    };
  }
  return ctx;
}

}  // namespace unwedge
