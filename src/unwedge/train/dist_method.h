// Keeping every network of a method equal across data-parallel ranks: the trained network
// (method->parameters(), gradients averaged by the trainer) and the auxiliary networks a method
// trains in aux_step() with its own optimizers (aux_optimizers(): discriminators, encoders).
// This sits in train/, not dist/: it needs methods/, which dist/ (-> core, io) may not use.
#pragma once
#include "unwedge/methods/method.h"
#include "unwedge/dist/distributed.h"

namespace unwedge {

/// Copies rank 0's weights of method->parameters() and of every aux optimizer's parameters to
/// every rank (the start of training: each rank initialised its own at random).
void dist_broadcast_method(Distributed& dist, Method& method);

/// The context of an auxiliary step on the ranks of `dist`: gradients averaged across them
/// (empty on one rank). `dist` must outlive the context.
StepContext dist_step_context(Distributed& dist);

}  // namespace unwedge
