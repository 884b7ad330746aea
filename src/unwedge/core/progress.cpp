#include "unwedge/core/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace unwedge {

namespace {
constexpr double kTtyRedrawS = 0.1;     // terminal redraw interval
constexpr double kPlainLineS = 10.0;    // interval between plain lines off a terminal
constexpr int kBarWidth = 24;
}  // namespace

std::string format_duration(double s) {
  char buf[32];
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, (int(s) % 3600) / 60);
  }
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::string unit, bool enabled)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), enabled_(enabled),
      tty_(isatty(fileno(stderr)) != 0), start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (enabled_ && !finished_ && tty_ && done_ > 0) std::fputc('\n', stderr);
}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done, const std::string& status) {
  done_ = done;
  status_ = status;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since < (tty_ ? kTtyRedrawS : kPlainLineS) && done_ < total_) return;
  last_draw_ = now;
  draw(false);
}

void Progress::finish(const std::string& status) {
  if (finished_) return;
  finished_ = true;
  if (!status.empty()) status_ = status;
  if (!enabled_) return;
  draw(true);
}

void Progress::draw(bool final_line) {
  double t = elapsed_s();
  double rate = t > 0 ? double(done_) / t : 0.0;
  double eta = rate > 0 && total_ > 0 ? double(total_ - done_) / rate : NAN;
  double frac = total_ > 0 ? std::min(1.0, double(done_) / double(total_)) : 0.0;
  std::string time_part = final_line ? "in " + format_duration(t)
                                     : format_duration(t) + " < ETA " + format_duration(eta);
  // A time-based bar ("s") has no meaningful rate: show done/total only.
  const bool show_rate = unit_ != "s";
  char rate_buf[64] = "";
  if (show_rate) std::snprintf(rate_buf, sizeof rate_buf, " %.2f %s/s", rate, unit_.c_str());
  if (tty_) {
    int fill = int(frac * kBarWidth);
    std::string bar(fill, '#');
    bar.resize(kBarWidth, '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %s%s %s %s\033[K", label_.c_str(), bar.c_str(),
                 (long long)done_, (long long)total_, unit_.c_str(), rate_buf,
                 time_part.c_str(), status_.c_str());
    if (final_line) std::fputc('\n', stderr);
  } else {
    std::fprintf(stderr, "%s %lld/%lld %s (%.0f%%)%s %s %s\n", label_.c_str(),
                 (long long)done_, (long long)total_, unit_.c_str(), 100.0 * frac, rate_buf,
                 time_part.c_str(), status_.c_str());
  }
  std::fflush(stderr);
}

}  // namespace unwedge
