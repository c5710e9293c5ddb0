// Learning-rate schedule against hand-derived values.
#include <gtest/gtest.h>

#include <cmath>

#include "core/train/schedule.h"

namespace posttrain::core {
namespace {

TEST(TrainSchedule, WarmupThenCosine) {
  // warmup 2 of 6 steps, peak 1, min 0: warmup 0.5, 1; cosine over steps 2..5 with
  // progress (s-2)/4: 1, (1+cos(pi/4))/2, (1+cos(pi/2))/2 = 0.5, (1+cos(3pi/4))/2.
  LrSchedule s{1.0, 2, 6, DecayKind::kCosine, 0.0};
  const double r = std::sqrt(0.5);
  const double want[] = {0.5, 1.0, 1.0, (1 + r) / 2, 0.5, (1 - r) / 2};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(s.lr_at(i), want[i], 1e-12) << i;
}

TEST(TrainSchedule, LinearWithFloor) {
  // No warmup, 4 steps, peak 2, floor 0.25 * 2 = 0.5, progress s/4: 2, 1.625, 1.25, 0.875
  // (0.5 would be the lr of a fifth step).
  LrSchedule s{2.0, 0, 4, DecayKind::kLinear, 0.25};
  const double want[] = {2.0, 1.625, 1.25, 0.875};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(s.lr_at(i), want[i], 1e-12) << i;
}

TEST(TrainSchedule, ConstantAndDegenerate) {
  LrSchedule c{3.0, 1, 5, DecayKind::kConstant, 0.0};
  EXPECT_DOUBLE_EQ(c.lr_at(0), 3.0);
  EXPECT_DOUBLE_EQ(c.lr_at(4), 3.0);
  LrSchedule one{3.0, 0, 1, DecayKind::kCosine, 0.0};
  EXPECT_DOUBLE_EQ(one.lr_at(0), 3.0);
  LrSchedule all_warmup{3.0, 4, 4, DecayKind::kCosine, 0.0};
  EXPECT_DOUBLE_EQ(all_warmup.lr_at(3), 3.0);
  EXPECT_THROW(parse_decay("step"), std::exception);
}

}  // namespace
}  // namespace posttrain::core
