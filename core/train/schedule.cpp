#include "core/train/schedule.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace posttrain::core {

DecayKind parse_decay(const std::string& name) {
  if (name == "cosine") return DecayKind::kCosine;
  if (name == "linear") return DecayKind::kLinear;
  if (name == "constant") return DecayKind::kConstant;
  throw UsageError("unknown lr decay '" + name + "' (cosine|linear|constant)");
}

double LrSchedule::lr_at(int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps) {
    return peak_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  }
  if (decay == DecayKind::kConstant) return peak_lr;
  const int64_t decay_steps = total_steps - warmup_steps;
  if (decay_steps <= 0) return peak_lr;
  // Progress 0 at the first step after warmup; it would reach 1 one step after the last, so
  // every step trains with a non-zero lr when min_lr_ratio is 0.
  const double progress = std::clamp(
      static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps), 0.0, 1.0);
  const double min_lr = peak_lr * min_lr_ratio;
  if (decay == DecayKind::kLinear) return peak_lr + (min_lr - peak_lr) * progress;
  return min_lr + 0.5 * (peak_lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace posttrain::core
