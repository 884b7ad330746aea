#include "unwedge/train/schedule.h"

#include <algorithm>
#include <cmath>

namespace unwedge {

double lr_at(const LrSchedule& s, int64_t step, int64_t total) {
  total = std::max<int64_t>(total, 1);
  int64_t warm = std::min(s.warmup, total / 10);
  if (step < warm) return s.lr * double(step + 1) / double(warm);
  int64_t span = std::max<int64_t>(1, total - 1 - warm);
  double t = std::clamp(double(step - warm) / double(span), 0.0, 1.0);
  double lo = s.lr * s.final_fraction;
  return lo + (s.lr - lo) * 0.5 * (1.0 + std::cos(M_PI * t));
}

}  // namespace unwedge
