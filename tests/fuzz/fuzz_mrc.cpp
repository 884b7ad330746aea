// Fuzz target: the MRC2014 reader. The input is a whole file (header, extended header, data):
// opened strictly and permissively (every mode, both byte orders, axis orders), read whole when
// small, and read by boxes through the memory mapping (a corner voxel, the far corner, a slab).
#include <algorithm>

#include "fuzz_common.h"
#include "unwedge/core/error.h"
#include "unwedge/io/mrc.h"

namespace {

void read_all_ways(const std::string& path, bool permissive) {
  unwedge::MrcReadOptions o;
  o.permissive = permissive;
  o.log_warnings = false;
  unwedge::MrcFile f(path, o);
  const auto s = f.shape();  // [Z, Y, X]
  if (s[0] * s[1] * s[2] <= (int64_t(1) << 18)) (void)f.read();
  (void)f.read_box(0, 1, 0, 1, 0, 1);
  (void)f.read_box(s[0] - 1, s[0], s[1] - 1, s[1], s[2] - 1, s[2]);
  const int64_t z = s[0] / 2;
  (void)f.read_box(z, std::min(z + 2, s[0]), 0, std::min<int64_t>(s[1], 8), 0,
                   std::min<int64_t>(s[2], 8));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = unwedge::fuzz::input_file(data, size, ".mrc");
  for (bool permissive : {false, true}) {
    try {
      read_all_ways(path, permissive);
    } catch (const unwedge::Error&) {
    }
  }
  return 0;
}
