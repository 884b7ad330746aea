// Progress bar with rate and ETA on a terminal; periodic plain lines when stderr is not one.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace unwedge {

class Progress {
 public:
  /// `total` units of work named `unit` ("step", "tile"); `enabled` false silences it.
  Progress(std::string label, int64_t total, std::string unit = "it", bool enabled = true);
  ~Progress();

  /// Reports `done` units completed, with an optional status text ("loss 0.12").
  void update(int64_t done, const std::string& status = "");
  /// Prints the final line (once).
  void finish(const std::string& status = "");

  /// Seconds since construction.
  double elapsed_s() const;

 private:
  void draw(bool final_line);

  std::string label_, unit_, status_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

/// Formats seconds as "1h02m", "3m05s" or "4.2s".
std::string format_duration(double seconds);

}  // namespace unwedge
