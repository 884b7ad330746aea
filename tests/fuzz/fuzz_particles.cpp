// Fuzz target: particle coordinate tables (CSV with x_vox,y_vox,z_vox[,class], or STAR with
// rlnCoordinateX/Y/Z), as `unwedge embed --coords` reads them. The first byte picks the file
// name's suffix (.csv or .star), the rest is the file.
#include "fuzz_common.h"
#include "unwedge/core/error.h"
#include "unwedge/eval/embedding.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const char* suffix = (data[0] & 1) ? ".star" : ".csv";
  const std::string path = unwedge::fuzz::input_file(data + 1, size - 1, suffix);
  try {
    (void)unwedge::particle_table_read(path);
  } catch (const unwedge::Error&) {
  }
  return 0;
}
