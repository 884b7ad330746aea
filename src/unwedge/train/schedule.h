// Learning-rate schedule: linear warm-up, then cosine decay to a floor.
#pragma once
#include <cstdint>

namespace unwedge {

struct LrSchedule {
  double lr = 4e-4;            ///< peak learning rate
  int64_t warmup = 50;         ///< warm-up steps (linear from lr / warmup to lr)
  double final_fraction = 0.05;  ///< learning rate at the last step, as a fraction of lr
};

/// Learning rate of `step` (0-based) in a run of `total` steps. Warm-up is clamped to a tenth
/// of the run; steps past `total` keep the final rate.
double lr_at(const LrSchedule& s, int64_t step, int64_t total);

}  // namespace unwedge
