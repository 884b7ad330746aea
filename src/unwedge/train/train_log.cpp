#include "unwedge/train/train_log.h"

#include <filesystem>
#include <fstream>

#include "unwedge/core/atomic_file.h"
#include "unwedge/core/error.h"

namespace unwedge {

TrainLog::TrainLog(const std::string& path, bool append)
    : path_(path), out_(path, append ? std::ios::app : std::ios::trunc) {
  if (!out_) throw IoError(path + ": cannot open the training log for writing");
}

void TrainLog::write(const TrainLogRecord& record) {
  if (!out_.is_open()) return;
  out_ << train_log_record_to_json(record).dump() << "\n" << std::flush;
  if (!out_) throw IoError(path_ + ": cannot write the training log");
}

void train_log_drop_after(const std::string& path, int64_t step) {
  if (!std::filesystem::exists(path)) return;
  std::string kept;
  // A run killed while writing a line left it without its newline: rewritten without it, or the
  // resumed run's first line would be glued to it.
  bool dropped = false;
  {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    const std::streamoff size = f.tellg();
    if (size > 0) {
      f.seekg(size - 1);
      dropped = f.get() != '\n';
    }
  }
  for (const TrainLogRecord& r : train_log_read(path)) {
    if (r.step > step) {
      dropped = true;
    } else {
      kept += train_log_record_to_json(r).dump() + "\n";
    }
  }
  if (dropped) write_text_file_atomic(path, kept, /*overwrite=*/true);
}

std::vector<TrainLogRecord> TrainLog::read(const std::string& path) { return train_log_read(path); }

}  // namespace unwedge
