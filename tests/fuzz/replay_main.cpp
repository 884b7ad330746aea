// The fuzz targets as plain programs (no libFuzzer, any compiler): CTest runs each over its
// corpus (tests/fuzz/corpus/<target>/: the seeds and every input a fuzzer found a defect with),
// then over seeded random mutations of it for a few seconds, so that a regression fails
// `make test`. A crash or an exception other than unwedge::Error ends the program (non-zero).
//
// usage: fuzz_<target>_replay [--seconds S] [--seed N] FILE_OR_FOLDER...
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<uint8_t> read_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// One to eight random edits, as libFuzzer's basic mutators: flip a bit, set a byte to an
/// edge value, overwrite 4 bytes with an edge int32, insert or erase a byte, truncate.
void mutate(std::vector<uint8_t>& b, std::mt19937_64& rng) {
  static const uint8_t kBytes[] = {0, 1, 0x7f, 0x80, 0xff, '\n', '=', ',', ':', '-', '.', 'e'};
  static const int32_t kInts[] = {0, -1, 1, 2, 4, 12, 1 << 20, 1 << 30, INT32_MIN, INT32_MAX};
  const int edits = 1 + int(rng() % 8);
  for (int e = 0; e < edits; ++e) {
    const size_t n = b.size();
    const size_t at = n ? rng() % n : 0;
    switch (rng() % 6) {
      case 0: if (n) b[at] ^= uint8_t(1u << (rng() % 8)); break;
      case 1: if (n) b[at] = kBytes[rng() % sizeof kBytes]; break;
      case 2:
        if (n >= 4) {
          const int32_t v = kInts[rng() % (sizeof kInts / sizeof kInts[0])];
          const size_t p = (rng() % (n / 4)) * 4;  // aligned, as header fields are
          std::memcpy(&b[p], &v, 4);
        }
        break;
      case 3: b.insert(b.begin() + std::ptrdiff_t(at), uint8_t(rng())); break;
      case 4: if (n) b.erase(b.begin() + std::ptrdiff_t(at)); break;
      case 5: if (n) b.resize(rng() % n); break;
    }
  }
}

/// The input being run, written to fuzz-replay-crash.bin (in the working folder) when an
/// exception escapes, so that it can become a corpus file.
const std::vector<uint8_t>* g_current = nullptr;

void save_current_and_abort() {
  if (g_current != nullptr) {
    if (FILE* f = std::fopen("fuzz-replay-crash.bin", "wb")) {
      std::fwrite(g_current->data(), 1, g_current->size(), f);
      std::fclose(f);
      std::fprintf(stderr, "an exception escaped: the input is in fuzz-replay-crash.bin\n");
    }
  }
  std::abort();
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 0;
  uint64_t seed = 1;
  std::vector<std::vector<uint8_t>> corpus;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (a == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (std::filesystem::is_directory(a)) {
      for (const auto& e : std::filesystem::directory_iterator(a)) {
        if (e.is_regular_file()) corpus.push_back(read_bytes(e.path()));
      }
    } else {
      corpus.push_back(read_bytes(a));
    }
  }
  if (corpus.empty()) {
    std::fprintf(stderr, "no inputs (give corpus files or folders)\n");
    return 1;
  }
  std::set_terminate(save_current_and_abort);
  for (const auto& in : corpus) {
    g_current = &in;
    LLVMFuzzerTestOneInput(in.data(), in.size());
  }
  std::mt19937_64 rng(seed);
  int64_t runs = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    std::vector<uint8_t> b = corpus[rng() % corpus.size()];
    mutate(b, rng);
    g_current = &b;
    LLVMFuzzerTestOneInput(b.data(), b.size());
    ++runs;
  }
  std::printf("%zu corpus inputs and %lld mutations (seed %llu): no defect\n", corpus.size(),
              (long long)runs, (unsigned long long)seed);
  return 0;
}
