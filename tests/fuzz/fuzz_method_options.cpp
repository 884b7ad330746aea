// Fuzz target: method option strings (`--opt KEY=VALUE`, repeated). The first line names the
// method (its first byte picks one of the registered methods), each further line is one
// KEY=VALUE string.
#include <vector>

#include "fuzz_common.h"
#include "unwedge/core/error.h"
#include "unwedge/methods/method.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto& methods = unwedge::method_registry().list();
  const std::string name = methods[data[0] % methods.size()].name;
  std::vector<std::string> kv;
  std::string cur;
  for (size_t i = 1; i < size; ++i) {
    if (data[i] == '\n') {
      kv.push_back(cur);
      cur.clear();
    } else {
      cur += char(data[i]);
    }
  }
  if (!cur.empty()) kv.push_back(cur);
  try {
    (void)unwedge::method_options_parse(name, kv);
  } catch (const unwedge::Error&) {
  }
  return 0;
}
