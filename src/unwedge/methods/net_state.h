// Saving and loading the state of a method whose learned state is one network (mae,
// contrastive): the network's parameters and buffers under the archive key "net".
#pragma once
#include <string>

#include <torch/torch.h>

namespace unwedge {

/// Writes `net` into `archive` under "net".
void method_net_save(const torch::nn::Module& net, torch::serialize::OutputArchive& archive);

/// Reads "net" from `archive` into `net`; throws FormatError naming `method` when it is absent.
void method_net_load(const std::string& method, torch::nn::Module& net,
                     torch::serialize::InputArchive& archive);

}  // namespace unwedge
