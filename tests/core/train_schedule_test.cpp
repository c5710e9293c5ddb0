// Learning-rate schedule against hand-derived values.
#include <gtest/gtest.h>

#include <cmath>

#include "core/train/schedule.h"

namespace posttrain::core {
namespace {

TEST(TrainSchedule, WarmupThenCosine) {
  // warmup 2 of 6 steps, peak 1, min 0: warmup 0.5, 1; cosine over steps 2..5 with
  // progress (s-2)/3: 1, (1+cos(pi/3))/2 = 0.75, (1+cos(2pi/3))/2 = 0.25, 0.
  LrSchedule s{1.0, 2, 6, DecayKind::kCosine, 0.0};
  const double want[] = {0.5, 1.0, 1.0, 0.75, 0.25, 0.0};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(s.lr_at(i), want[i], 1e-12) << i;
}

TEST(TrainSchedule, LinearWithFloor) {
  // No warmup, 4 steps, peak 2, floor 0.25 * 2 = 0.5: 2, 1.5, 1, 0.5.
  LrSchedule s{2.0, 0, 4, DecayKind::kLinear, 0.25};
  const double want[] = {2.0, 1.5, 1.0, 0.5};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(s.lr_at(i), want[i], 1e-12) << i;
}

TEST(TrainSchedule, ConstantAndDegenerate) {
  LrSchedule c{3.0, 1, 5, DecayKind::kConstant, 0.0};
  EXPECT_DOUBLE_EQ(c.lr_at(0), 3.0);
  EXPECT_DOUBLE_EQ(c.lr_at(4), 3.0);
  LrSchedule one{3.0, 0, 1, DecayKind::kCosine, 0.0};
  EXPECT_DOUBLE_EQ(one.lr_at(0), 3.0);
  EXPECT_THROW(parse_decay("step"), std::exception);
}

}  // namespace
}  // namespace posttrain::core
