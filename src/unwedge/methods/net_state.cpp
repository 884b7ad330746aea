#include "unwedge/methods/net_state.h"

#include "unwedge/core/error.h"

namespace unwedge {

void method_net_save(const torch::nn::Module& net, torch::serialize::OutputArchive& archive) {
  torch::serialize::OutputArchive sub;
  net.save(sub);
  archive.write("net", sub);
}

void method_net_load(const std::string& method, torch::nn::Module& net,
                     torch::serialize::InputArchive& archive) {
  torch::serialize::InputArchive sub;
  if (!archive.try_read("net", sub)) {
    throw FormatError("method " + method + ": saved state has no network ('net')");
  }
  net.load(sub);
}

}  // namespace unwedge
