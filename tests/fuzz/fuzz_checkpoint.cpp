// Fuzz target: model files (.uwm, a torch::serialize zip archive with the method, its options,
// the training info as JSON and the tensors), as `unwedge restore --model` and `train --resume`
// read them, and the optimizer state loaded from them.
#include "fuzz_common.h"
#include "unwedge/core/error.h"
#include "unwedge/model/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  unwedge::fuzz::quiet_logs();
  const std::string path = unwedge::fuzz::input_file(data, size, ".uwm");
  try {
    unwedge::LoadedCheckpoint ck = unwedge::checkpoint_load(path);
    if (ck.has_optimizer) {
      torch::optim::AdamW opt(ck.method->parameters());
      unwedge::checkpoint_load_optimizer(ck, opt, path);
    }
  } catch (const unwedge::Error&) {
  }
  return 0;
}
