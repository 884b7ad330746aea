// Progress of long jobs (training, restoration, sampling). A loop reports through a Progress to a
// ProgressFn that the caller chooses: the CLI passes progress_to_stderr() (a bar with rate and
// ETA on a terminal, periodic plain lines otherwise), the Python API its own function, and
// library callers that pass nothing get silence.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace unwedge {

/// One report of a stage's progress.
struct ProgressReport {
  std::string label;      ///< the stage: "train n2n", "restore", "sample"
  int64_t done = 0;       ///< units done
  int64_t total = 0;      ///< units in all
  std::string unit;       ///< "step", "tile", "s"
  std::string status;     ///< free text, e.g. "loss 0.12 val 0.13 4.1 step/s"
  double elapsed_s = 0;   ///< seconds since the stage began
  bool final = false;     ///< the stage's last report (it completed)
  bool abandoned = false;  ///< the stage stopped without completing (an error)
};

/// Where a job's progress goes; empty: nowhere.
using ProgressFn = std::function<void(const ProgressReport&)>;

/// A progress bar on stderr: redrawn at most every 0.1 s on a terminal, a plain line every 10 s
/// otherwise; a stage's final report always prints.
ProgressFn progress_to_stderr();

/// Reports one stage of `total` units named `unit` to a ProgressFn.
class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit, ProgressFn sink);
  /// The stderr bar when `enabled`, else nowhere.
  Progress(std::string label, int64_t total, std::string unit = "it", bool enabled = true);
  /// An unfinished stage (an error unwinding) is reported as abandoned.
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// Reports `done` units completed, with an optional status text ("loss 0.12").
  void update(int64_t done, const std::string& status = "");
  /// Sets the total (a time budget's planned steps change as the rate is measured).
  void set_total(int64_t total) { report_.total = total; }
  /// Reports the end (once).
  void finish(const std::string& status = "");

  /// Seconds since construction.
  double elapsed_s() const;

 private:
  void send();

  ProgressFn sink_;
  ProgressReport report_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
};

/// Formats seconds as "1h02m", "3m05s" or "4.2s".
std::string format_duration(double seconds);

}  // namespace unwedge
