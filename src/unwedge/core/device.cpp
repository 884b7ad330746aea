#include "unwedge/core/device.h"

#include <ATen/autocast_mode.h>
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
  throw ValueError(what + ": '" + name + "' is not a precision (fp32, bf16)");
}

AutocastGuard::AutocastGuard(c10::ScalarType precision, const c10::Device& device) {
  if (precision == c10::kFloat) return;
  if (precision != c10::kBFloat16) {
    throw ValueError("precision: only fp32 and bf16 are supported");
  }
  cuda_ = device.is_cuda();
  active_ = true;
  if (cuda_) {
    prev_enabled_ = at::autocast::is_enabled();
    prev_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(c10::kBFloat16);
    at::autocast::set_enabled(true);
  } else {
    prev_enabled_ = at::autocast::is_cpu_enabled();
    prev_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_autocast_cpu_dtype(c10::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cuda_) {
    at::autocast::set_enabled(prev_enabled_);
    at::autocast::set_autocast_gpu_dtype(prev_dtype_);
  } else {
    at::autocast::set_cpu_enabled(prev_enabled_);
    at::autocast::set_autocast_cpu_dtype(prev_dtype_);
  }
}

}  // namespace unwedge
