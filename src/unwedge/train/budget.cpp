#include "unwedge/train/budget.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "unwedge/core/error.h"

namespace unwedge {

BudgetClock budget_clock_parse(const std::string& text, const std::string& field) {
  if (text == "wall") return BudgetClock::wall;
  if (text == "cpu") return BudgetClock::cpu;
  throw ValueError(field + ": '" + text + "' (wall | cpu)");
}

double budget_clock_now(BudgetClock clock) {
  if (clock == BudgetClock::cpu) {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Budget::Budget(BudgetClock clock, double seconds, double spent_s, int64_t planned)
    : clock_(clock), seconds_(seconds), spent_s_(spent_s), start_(budget_clock_now(clock)),
      planned_(planned) {}

Budget Budget::of_steps(int64_t steps, BudgetClock clock) {
  if (steps < 1) throw ValueError("budget: " + std::to_string(steps) + " steps is not positive");
  return Budget(clock, 0, 0, steps);
}

Budget Budget::of_minutes(double minutes, BudgetClock clock, double spent_s, int64_t planned_steps) {
  if (!(minutes > 0) || !std::isfinite(minutes)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", minutes);
    throw ValueError(std::string("budget: ") + buf + " minutes is not a positive finite number");
  }
  // Until the rate is measured, plan "many" steps (the schedule holds its warm-up and peak).
  return Budget(clock, minutes * 60.0, spent_s, planned_steps > 0 ? planned_steps : int64_t(1) << 30);
}

double Budget::session_s() const { return budget_clock_now(clock_) - start_; }

double Budget::elapsed_s() const { return spent_s_ + session_s(); }

bool Budget::spent(int64_t step) const {
  // A time budget stops before a step that would end more than half a step past it, so the
  // overrun is at most half a step (a whole one on slow steps before).
  return timed() ? elapsed_s() + 0.5 * step_s_ >= seconds_ : step >= planned_;
}

void Budget::observe(int64_t step) {
  if (first_step_ < 0) first_step_ = mark_step_ = step - 1;
  step_s_ = session_s() / double(std::max<int64_t>(1, step - first_step_));
  if (!timed() || step - first_step_ < 3 || step % 10 != 0) return;
  const double now = session_s();
  const double rate = double(step - mark_step_) / std::max(1e-9, now - mark_s_);
  const int64_t left = int64_t((seconds_ - spent_s_ - now) * rate);
  planned_ = std::max<int64_t>(step + 1, step + left);
  mark_step_ = step;
  mark_s_ = now;
}

}  // namespace unwedge
