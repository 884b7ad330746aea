// The training log's format (JSONL, one object per logged step), shared by the trainer that writes
// it (train/train_log.h) and the report that plots it (eval/report.h). It lives in io/, below
// both: eval may not use train/.
//
// A line: {"elapsed_s": 12.3, "loss": 0.41, "lr": 0.0004, "step": 50, "steps_per_s": 4.1,
//          "val_loss": 0.44, "d_loss": 1.2, ...}
// step, loss, lr, steps_per_s and elapsed_s are the trainer's; val_loss is present on lines
// where the validation loss was computed; every other number is a term of the method's loss
// (Method::step_stats: cryogen-map's d_loss, d_real, d_fake, data, energy, ...).
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace unwedge {

/// One line of the training log.
struct TrainLogRecord {
  int64_t step = 0;                 ///< optimizer steps completed
  std::optional<double> loss;       ///< mean training loss over the window since the last line
  std::optional<double> val_loss;   ///< validation loss (absent: not computed at this step)
  double lr = 0;                    ///< learning rate of the last step
  double steps_per_s = 0;           ///< steps per second over the window
  double elapsed_s = 0;             ///< seconds of the budget's clock so far (across resumes)
  /// The method's loss terms by name, each the mean over the window.
  std::map<std::string, double> terms;

  bool operator==(const TrainLogRecord& o) const;
};

/// The JSON object of one line (keys as above).
nlohmann::json train_log_record_to_json(const TrainLogRecord& r);
/// A line's object back; std::nullopt for an object without a numeric "step" (not a log line).
/// Non-numeric values of other keys are ignored.
std::optional<TrainLogRecord> train_log_record_from_json(const nlohmann::json& j);

/// Every record of the log at `path`, in order. A line that is not a JSON object is a
/// FormatError naming the file and line, except a truncated last line (a run still writing),
/// which is skipped with a warning. IoError when the file cannot be opened.
std::vector<TrainLogRecord> train_log_read(const std::string& path);

}  // namespace unwedge
