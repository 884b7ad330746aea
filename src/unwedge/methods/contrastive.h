// contrastive: SimCLR-style embeddings of sub-tomograms (NT-Xent between two views).
//
// Each view of a sub-tomogram x is R x (an independent Haar-uniform rotation), re-wedged by the
// data's wedge T_M, plus fresh Gaussian noise of std noise_level * std(x). A CNNEncoder maps a
// view to h (the representation, embed()) and its projection head to z; NT-Xent pulls the two
// views of each sub-tomogram together and pushes the other 2B - 2 views of the batch away.
// The batch size is the trainer's `--batch` (at least 2; more gives more negatives).
// restore() is not meaningful for an embedding model and throws ValueError.
#pragma once
#include <torch/torch.h>

#include "unwedge/methods/method.h"

namespace unwedge {

MethodInfo contrastive_method_info();

/// NT-Xent (normalised temperature-scaled cross entropy) of two views z1, z2 [B, D]: rows are
/// L2-normalised, s_ij = <z_i, z_j> / temperature over the 2B rows, and the loss is the mean
/// over all 2B rows of -log(exp(s_i,pos) / sum_{j != i} exp(s_ij)), pos = the other view.
torch::Tensor nt_xent(const torch::Tensor& z1, const torch::Tensor& z2, double temperature);

}  // namespace unwedge
