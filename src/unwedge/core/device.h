// Device names at interfaces ("cpu", "cuda", "cuda:N") parsed once, with a clear error.
#pragma once
#include <string>

#include <c10/core/Device.h>

namespace unwedge {

/// Parses `name`; throws ValueError for an unknown name or CUDA when it is not available.
c10::Device device_parse(const std::string& name);

}  // namespace unwedge
