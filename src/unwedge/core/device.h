// Device names at interfaces ("auto", "cpu", "cuda", "cuda:N") and numeric precision
// ("fp32", "bf16"), parsed once with a clear error, and the autocast scope that applies the
// precision to a network's forward pass.
#pragma once
#include <string>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace unwedge {

/// Resolves a device name to a concrete one: "auto" -> "cuda" when torch::cuda::is_available()
/// else "cpu". With `local_rank` >= 0 (one process per GPU), a bare "cuda" (or "auto" on a GPU
/// node) becomes "cuda:<local_rank mod device count>". Other names are returned unchanged.
std::string device_resolve(const std::string& name, int local_rank = -1);

/// Parses `name` (after device_resolve); throws ValueError for an unknown name or CUDA when it is
/// not available (a CPU-only LibTorch, or no GPU visible).
c10::Device device_parse(const std::string& name);

/// Parses a precision name: "fp32" -> kFloat, "bf16" -> kBFloat16; `what` names the option.
/// "auto" is refused here: precision_resolve it first.
c10::ScalarType precision_parse(const std::string& name, const std::string& what);

/// Whether this CPU has bf16 dot-product instructions (x86 AVX512_BF16), with which oneDNN runs
/// bf16 convolutions faster than float32 ones. False on other architectures.
bool cpu_has_bf16();

/// Resolves a precision name for `device`: "auto" -> "bf16" on a CPU with cpu_has_bf16() (a U-Net
/// training step ~1.9x and a restoration ~1.6x faster per CPU-second on this project's AMD EPYC,
/// at the same quality: bench/RESULTS.md), "fp32" on other CPUs and on GPUs (bf16 there is not
/// measured yet). Other names are returned unchanged.
std::string precision_resolve(const std::string& name, const c10::Device& device);

/// Why "auto" chose what it did on `device`, for the run's log.
std::string precision_auto_reason(const c10::Device& device);

/// Mixed precision for the scope of the guard: with kBFloat16, autocast on `device` runs
/// convolutions and matrix products in bf16 while reductions, FFTs and losses stay float32
/// (autocast's own op lists); callers take the loss as float32. kFloat does nothing.
/// Throws ValueError when the precision is not supported on `device`.
class AutocastGuard {
 public:
  AutocastGuard(c10::ScalarType precision, const c10::Device& device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false, cuda_ = false, prev_enabled_ = false;
  c10::ScalarType prev_dtype_ = c10::kFloat;
};

}  // namespace unwedge
