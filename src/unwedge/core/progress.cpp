#include "unwedge/core/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <memory>

namespace unwedge {

namespace {

constexpr double kTtyRedrawS = 0.1;     // terminal redraw interval
constexpr double kPlainLineS = 10.0;    // interval between plain lines off a terminal
constexpr int kBarWidth = 24;

// The state of the stderr bar across reports: when it last drew and whether a terminal line is
// open (to end it when a stage is abandoned).
struct StderrBar {
  bool tty = isatty(fileno(stderr)) != 0;
  std::string label;
  double last_draw_s = 0;
  bool line_open = false;

  void operator()(const ProgressReport& r) {
    if (r.label != label) {  // a new stage
      label = r.label;
      last_draw_s = 0;
    }
    if (r.abandoned) {
      if (tty && line_open) std::fputc('\n', stderr);
      line_open = false;
      return;
    }
    const bool due = r.elapsed_s - last_draw_s >= (tty ? kTtyRedrawS : kPlainLineS);
    if (!r.final && !due && r.done < r.total) return;
    last_draw_s = r.elapsed_s;
    draw(r);
  }

  void draw(const ProgressReport& r) {
    const double t = r.elapsed_s;
    const double rate = t > 0 ? double(r.done) / t : 0.0;
    const double eta = rate > 0 && r.total > 0 ? double(r.total - r.done) / rate : NAN;
    const double frac = r.total > 0 ? std::min(1.0, double(r.done) / double(r.total)) : 0.0;
    const std::string time_part = r.final ? "in " + format_duration(t)
                                          : format_duration(t) + " < ETA " + format_duration(eta);
    // A time-based bar ("s") has no meaningful rate: show done/total only.
    char rate_buf[64] = "";
    if (r.unit != "s") std::snprintf(rate_buf, sizeof rate_buf, " %.2f %s/s", rate, r.unit.c_str());
    if (tty) {
      std::string bar(size_t(frac * kBarWidth), '#');
      bar.resize(kBarWidth, '.');
      std::fprintf(stderr, "\r%s [%s] %lld/%lld %s%s %s %s\033[K", r.label.c_str(), bar.c_str(),
                   (long long)r.done, (long long)r.total, r.unit.c_str(), rate_buf,
                   time_part.c_str(), r.status.c_str());
      line_open = !r.final;
      if (r.final) std::fputc('\n', stderr);
    } else {
      std::fprintf(stderr, "%s %lld/%lld %s (%.0f%%)%s %s %s\n", r.label.c_str(),
                   (long long)r.done, (long long)r.total, r.unit.c_str(), 100.0 * frac, rate_buf,
                   time_part.c_str(), r.status.c_str());
    }
    std::fflush(stderr);
  }
};

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

ProgressFn progress_to_stderr() {
  auto bar = std::make_shared<StderrBar>();
  return [bar](const ProgressReport& r) { (*bar)(r); };
}

Progress::Progress(std::string label, int64_t total, std::string unit, ProgressFn sink)
    : sink_(std::move(sink)), start_(std::chrono::steady_clock::now()) {
  report_.label = std::move(label);
  report_.total = total;
  report_.unit = std::move(unit);
}

Progress::Progress(std::string label, int64_t total, std::string unit, bool enabled)
    : Progress(std::move(label), total, std::move(unit),
               enabled ? progress_to_stderr() : ProgressFn{}) {}

Progress::~Progress() {
  if (finished_ || !sink_) return;
  report_.abandoned = true;
  report_.elapsed_s = elapsed_s();
  try {
    sink_(report_);
  } catch (...) {  // a destructor must not throw
  }
}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::send() {
  if (!sink_) return;
  report_.elapsed_s = elapsed_s();
  sink_(report_);
}

void Progress::update(int64_t done, const std::string& status) {
  report_.done = done;
  report_.status = status;
  send();
}

void Progress::finish(const std::string& status) {
  if (finished_) return;
  finished_ = true;
  if (!status.empty()) report_.status = status;
  report_.final = true;
  send();
}

}  // namespace unwedge
