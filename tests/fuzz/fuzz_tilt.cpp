// Fuzz target: tilt-angle files (.tlt/.rawtlt: one angle in degrees per line, C locale).
#include "fuzz_common.h"
#include "unwedge/core/error.h"
#include "unwedge/io/tilt.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = unwedge::fuzz::input_file(data, size, ".tlt");
  try {
    (void)unwedge::tilt_read(path);
  } catch (const unwedge::Error&) {
  }
  return 0;
}
