// The training log, MODEL.train.jsonl: the trainer appends one record per logged step and the
// report reads them back, both through the line format of io/train_log_format.h.
#pragma once
#include <fstream>
#include <string>
#include <vector>

#include "unwedge/io/train_log_format.h"

namespace unwedge {

class TrainLog {
 public:
  /// A log that writes nothing (the ranks other than 0).
  TrainLog() = default;
  /// Opens `path` for writing: appended to when `append` (a resumed run), else started afresh.
  /// Throws IoError naming the file when it cannot be opened.
  TrainLog(const std::string& path, bool append);

  bool is_open() const { return out_.is_open(); }
  /// Writes one record as one line and flushes it (a killed run loses no logged step).
  void write(const TrainLogRecord& record);

  /// Every record of the log at `path` (train_log_read: a truncated last line is skipped).
  static std::vector<TrainLogRecord> read(const std::string& path);

 private:
  std::string path_;
  std::ofstream out_;
};

/// Removes from the log at `path` the lines of steps after `step` (what a resumed run does
/// again); nothing when the file does not exist.
void train_log_drop_after(const std::string& path, int64_t step);

}  // namespace unwedge
