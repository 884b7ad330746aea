// The training budget: a number of optimizer steps (given, or epochs of the sampler), or minutes
// of a clock, wall time or this process's CPU time over all threads (equal budgets on a shared
// machine). A time budget re-estimates the planned number of steps from the measured rate every
// 10 steps, so the learning-rate schedule follows the budget. A resumed run keeps counting the
// seconds its earlier sessions spent.
#pragma once
#include <cstdint>
#include <string>

namespace unwedge {

/// The clock a time budget is measured on.
enum class BudgetClock {
  wall,  ///< elapsed wall-clock time
  cpu,   ///< this process's CPU time, all threads (CLOCK_PROCESS_CPUTIME_ID)
};

/// "wall" / "cpu"; throws ValueError naming `field` for anything else.
BudgetClock budget_clock_parse(const std::string& text, const std::string& field = "budget-clock");

/// Seconds on `clock` since an arbitrary origin (differences are what count).
double budget_clock_now(BudgetClock clock);

class Budget {
 public:
  /// An empty budget, spent at once (a placeholder until one of the factories below is assigned).
  Budget() = default;
  /// A budget of `steps` optimizer steps (> 0), measured on `clock` for the log's elapsed time.
  static Budget of_steps(int64_t steps, BudgetClock clock = BudgetClock::wall);
  /// A budget of `minutes` (> 0) of `clock`, of which `spent_s` seconds were used by earlier
  /// sessions (a resumed run); `planned_steps` is the first guess of the steps it allows (a
  /// resumed run's estimate; 0: unknown).
  static Budget of_minutes(double minutes, BudgetClock clock, double spent_s = 0,
                           int64_t planned_steps = 0);

  bool timed() const { return seconds_ > 0; }
  /// Seconds of the budget's clock spent, this session and earlier ones.
  double elapsed_s() const;
  /// Seconds of the budget's clock spent this session.
  double session_s() const;
  /// True when no step should start after `step` steps: the step count is reached, or the time
  /// left is less than half a step (the mean step of this session, from observe()).
  bool spent(int64_t step) const;
  /// The steps the schedule plans: the step budget, or the time budget's latest estimate.
  int64_t planned_steps() const { return planned_; }
  /// Sets the planned steps (rank 0's estimate on every rank; the final count of a time budget).
  void set_planned_steps(int64_t steps) { planned_ = steps; }
  /// Called after each step with the steps completed: a time budget re-estimates planned_steps
  /// every 10 steps (from the third step of the session) from the rate since its last estimate.
  void observe(int64_t step);

 private:
  Budget(BudgetClock clock, double seconds, double spent_s, int64_t planned);

  BudgetClock clock_ = BudgetClock::wall;
  double seconds_ = 0;   ///< the budget in seconds (0: a step budget)
  double spent_s_ = 0;   ///< seconds spent by earlier sessions
  double start_ = 0;     ///< the clock when this session began
  int64_t planned_ = 0;
  int64_t first_step_ = -1;           ///< the first step this session observed (-1: none yet)
  int64_t mark_step_ = 0;             ///< step and session time of the last estimate
  double mark_s_ = 0;
  double step_s_ = 0;                 ///< mean seconds per step this session (0: none observed)
};

}  // namespace unwedge
