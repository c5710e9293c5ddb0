// Learning-rate schedule: linear warmup from 0 to the peak over `warmup_steps`, then cosine or
// linear decay towards peak * min_lr_ratio, reached one step after the last (or constant). A pure function of the
// step, so a resumed run needs only the step to continue the schedule.
#pragma once

#include <cstdint>
#include <string>

namespace posttrain::core {

enum class DecayKind { kCosine, kLinear, kConstant };

// "cosine" | "linear" | "constant"; anything else throws UsageError.
DecayKind parse_decay(const std::string& name);

struct LrSchedule {
  double peak_lr = 1e-5;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  DecayKind decay = DecayKind::kCosine;
  double min_lr_ratio = 0.0;  // final lr = peak_lr * min_lr_ratio

  // The lr used by optimizer step `step` (0-based): step 0 of a warmup gets peak/warmup.
  double lr_at(int64_t step) const;
};

}  // namespace posttrain::core
