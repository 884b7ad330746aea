#include "unwedge/train/train_log.h"

#include <filesystem>

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
  bool dropped = false;
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
