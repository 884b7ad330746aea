#include "unwedge/train/train_log.h"

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

std::vector<TrainLogRecord> TrainLog::read(const std::string& path) { return train_log_read(path); }

}  // namespace unwedge
