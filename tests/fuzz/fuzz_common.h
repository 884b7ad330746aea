// Shared by the fuzz targets (tests/fuzz/fuzz_*.cpp): each defines LLVMFuzzerTestOneInput, built
// either with libFuzzer (`make fuzz`: clang, -fsanitize=fuzzer,address,undefined) or with
// replay_main.cpp as a plain program that CTest runs over the corpus (`make test`).
//
// The oracle: a parser of outside input may throw the project's typed errors (unwedge::Error,
// whose message names the file and the value); anything else escaping (std::out_of_range,
// a LibTorch error, std::bad_alloc from a size taken on trust), a crash, a hang or a
// sanitizer report is a defect.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "unwedge/core/log.h"

namespace unwedge::fuzz {

/// Writes the input to a file of this process (reused across executions) and returns its path.
inline std::string input_file(const uint8_t* data, size_t size, const char* suffix) {
  static const std::string dir = [] {
    const char* t = std::getenv("TMPDIR");
    return std::string(t != nullptr && *t != '\0' ? t : "/tmp");
  }();
  const std::string path =
      dir + "/unwedge_fuzz_" + std::to_string(::getpid()) + suffix;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

/// Warnings of permissive reads would flood the fuzzer's output.
inline void quiet_logs() {
  static const bool once = [] {
    log_set_level(LogLevel::quiet);
    return true;
  }();
  (void)once;
}

}  // namespace unwedge::fuzz
