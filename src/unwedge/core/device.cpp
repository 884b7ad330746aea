#include "unwedge/core/device.h"

#include <torch/cuda.h>

#include "unwedge/core/error.h"

namespace unwedge {

c10::Device device_parse(const std::string& name) {
  try {
    c10::Device d(name);
    if (d.is_cuda() && !torch::cuda::is_available()) {
      throw ValueError("device: '" + name + "' requested but CUDA is not available");
    }
    return d;
  } catch (const c10::Error&) {
    throw ValueError("device: '" + name + "' is not a device (cpu, cuda, cuda:N)");
  }
}

}  // namespace unwedge
