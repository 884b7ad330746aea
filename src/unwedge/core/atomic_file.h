// Outputs written to a temporary name in the same folder and renamed when complete,
// so a failed run never leaves a partial file or clobbers an earlier output.
#pragma once
#include <string>

namespace unwedge {

/// Throws ExistsError when `path` exists and `overwrite` is false.
void output_check_writable(const std::string& path, bool overwrite);

/// A temporary path beside the final one. Call commit() once the file is complete;
/// otherwise the destructor removes the temporary.
class AtomicOutput {
 public:
  AtomicOutput(std::string final_path, bool overwrite);
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  const std::string& tmp_path() const { return tmp_; }
  const std::string& final_path() const { return final_; }
  /// Renames the temporary onto the final path (atomic on one filesystem).
  void commit();

 private:
  std::string final_, tmp_;
  bool committed_ = false;
};

/// Writes `text` to `path` atomically.
void write_text_file_atomic(const std::string& path, const std::string& text, bool overwrite);

}  // namespace unwedge
