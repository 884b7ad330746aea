#include "unwedge/core/atomic_file.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "unwedge/core/error.h"

namespace unwedge {

namespace fs = std::filesystem;

void output_check_writable(const std::string& path, bool overwrite) {
  if (!overwrite && fs::exists(path)) {
    throw ExistsError(path + ": output exists (use --overwrite to replace it)");
  }
  fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::is_directory(parent)) {
    throw IoError(path + ": output folder " + parent.string() + " does not exist");
  }
}

AtomicOutput::AtomicOutput(std::string final_path, bool overwrite)
    : final_(std::move(final_path)) {
  output_check_writable(final_, overwrite);
  std::random_device rd;
  fs::path p(final_);
  tmp_ = (p.parent_path() / ("." + p.filename().string() + "." + std::to_string(getpid()) + "." +
                             std::to_string(rd() % 100000) + ".tmp"))
             .string();
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    std::error_code ec;
    fs::remove(tmp_, ec);
  }
}

void AtomicOutput::commit() {
  std::error_code ec;
  fs::rename(tmp_, final_, ec);
  if (ec) throw IoError(final_ + ": cannot rename " + tmp_ + " into place: " + ec.message());
  committed_ = true;
}

void write_text_file_atomic(const std::string& path, const std::string& text, bool overwrite) {
  AtomicOutput out(path, overwrite);
  {
    std::ofstream f(out.tmp_path(), std::ios::binary);
    if (!f) throw IoError(out.tmp_path() + ": cannot open for writing");
    f << text;
    if (!f.good()) throw IoError(out.tmp_path() + ": write failed");
  }
  out.commit();
}

}  // namespace unwedge
