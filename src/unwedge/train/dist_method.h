// Keeping every network of a method equal across data-parallel ranks: the trained network
// (method->parameters(), gradients averaged by the trainer) and the auxiliary networks a method
// updates inside loss() with its own optimizers (aux_optimizers(): discriminators, encoders).
#pragma once
#include "unwedge/methods/aux_sync.h"
#include "unwedge/methods/method.h"
#include "unwedge/train/distributed.h"

namespace unwedge {

/// Copies rank 0's weights of method->parameters() and of every aux optimizer's parameters to
/// every rank (the start of training: each rank initialised its own at random).
void dist_broadcast_method(Distributed& dist, Method& method);

/// While alive, every auxiliary optimizer step on this thread (aux_grad_sync, called by
/// cryogen_step_scaled) first averages its gradients across the ranks of `dist`.
class DistAuxSync {
 public:
  explicit DistAuxSync(Distributed& dist);

 private:
  AuxGradSyncScope scope_;
};

}  // namespace unwedge
