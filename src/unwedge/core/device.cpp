#include "unwedge/core/device.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>
#include <torch/cuda.h>

#include "unwedge/core/error.h"

namespace unwedge {

std::string device_resolve(const std::string& name, int local_rank) {
  std::string n = name;
  if (n == "auto") n = torch::cuda::is_available() ? "cuda" : "cpu";
  if (n == "cuda" && local_rank >= 0 && torch::cuda::is_available()) {
    n = "cuda:" + std::to_string(local_rank % int(torch::cuda::device_count()));
  }
  return n;
}

c10::Device device_parse(const std::string& name) {
  const std::string n = device_resolve(name);
  c10::optional<c10::Device> parsed;
  try {
    parsed = c10::Device(n);
  } catch (const c10::Error&) {
  }
  if (!parsed || (!parsed->is_cpu() && !parsed->is_cuda())) {
    throw ValueError("device: '" + name + "' is not a device (auto, cpu, cuda, cuda:N)");
  }
  const c10::Device d = *parsed;
  if (d.is_cuda() && !torch::cuda::is_available()) {
    throw ValueError("device: '" + name + "' requested but CUDA is not available (this "
                     "LibTorch is CPU-only or no GPU is visible; use cpu or auto)");
  }
  if (d.is_cuda() && d.has_index() && d.index() >= int(torch::cuda::device_count())) {
    throw ValueError("device: '" + name + "' but only " +
                     std::to_string(torch::cuda::device_count()) + " CUDA devices are visible");
  }
  return d;
}

c10::ScalarType precision_parse(const std::string& name, const std::string& what) {
  if (name == "fp32") return c10::kFloat;
  if (name == "bf16") return c10::kBFloat16;
  throw ValueError(what + ": '" + name + "' is not a precision (auto, fp32, bf16)");
}

bool cpu_has_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

std::string precision_resolve(const std::string& name, const c10::Device& device) {
  if (name != "auto") return name;
  return device.is_cpu() && cpu_has_bf16() ? "bf16" : "fp32";
}

std::string precision_auto_reason(const c10::Device& device) {
  if (!device.is_cpu()) return "fp32 on a GPU until bf16 is measured there";
  return cpu_has_bf16() ? "this CPU has avx512_bf16" : "this CPU has no avx512_bf16";
}

namespace {

// Autocast state per device type: LibTorch 2.4 replaced the CPU/GPU-specific calls of 1.x
// (kept there only as deprecated aliases) with calls that take the device type.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled(bool cuda) {
  return at::autocast::is_autocast_enabled(cuda ? at::kCUDA : at::kCPU);
}
c10::ScalarType autocast_dtype(bool cuda) {
  return at::autocast::get_autocast_dtype(cuda ? at::kCUDA : at::kCPU);
}
void autocast_set(bool cuda, bool enabled, c10::ScalarType dtype) {
  at::autocast::set_autocast_dtype(cuda ? at::kCUDA : at::kCPU, dtype);
  at::autocast::set_autocast_enabled(cuda ? at::kCUDA : at::kCPU, enabled);
}
#else
bool autocast_enabled(bool cuda) {
  return cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
c10::ScalarType autocast_dtype(bool cuda) {
  return cuda ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void autocast_set(bool cuda, bool enabled, c10::ScalarType dtype) {
  if (cuda) {
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(enabled);
  }
}
#endif

}  // namespace

AutocastGuard::AutocastGuard(c10::ScalarType precision, const c10::Device& device) {
  if (precision == c10::kFloat) return;
  if (precision != c10::kBFloat16) {
    throw ValueError("precision: only fp32 and bf16 are supported");
  }
  cuda_ = device.is_cuda();
  active_ = true;
  prev_enabled_ = autocast_enabled(cuda_);
  prev_dtype_ = autocast_dtype(cuda_);
  autocast_set(cuda_, true, c10::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  autocast_set(cuda_, prev_enabled_, prev_dtype_);
}

}  // namespace unwedge
