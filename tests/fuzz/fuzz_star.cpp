// Fuzz target: STAR files (RELION 5 tomograms.star and particle tables): parsed, and what
// parses is formatted and parsed again, which must give the same table.
#include "fuzz_common.h"
#include "unwedge/core/error.h"
#include "unwedge/io/star.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  unwedge::StarFile star;
  try {
    star = unwedge::star_parse(text, "fuzz.star");
  } catch (const unwedge::Error&) {
    return 0;
  }
  const std::string again = unwedge::star_format(star);
  try {
    if (unwedge::star_format(unwedge::star_parse(again, "formatted.star")) != again) std::abort();
  } catch (const unwedge::Error&) {
    std::abort();  // what star_format wrote must read back
  }
  return 0;
}
