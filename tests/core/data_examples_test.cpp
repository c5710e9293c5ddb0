// The next-token target shift of token examples (core/data/examples.h). SFT's JSONL parsing is
// tested in tests/sft/sft_examples_test.cpp.
#include <gtest/gtest.h>

#include "core/data/examples.h"
#include "core/logprobs.h"

namespace posttrain::core {
namespace {

TEST(DataExamples, TargetsAreTheNextTrainedToken) {
  // ids 10 11 12 13 14, train on tokens 12 and 14 (mask) -> position 1 predicts 12, 3 predicts 14.
  TokenizedExample ex = make_targets({10, 11, 12, 13, 14}, {0, 0, 1, 0, 1});
  const int64_t no = kIgnoreTarget;
  EXPECT_EQ(ex.targets, (std::vector<int64_t>{no, 12, no, 14, no}));
  EXPECT_EQ(ex.num_targets(), 2);
}

}  // namespace
}  // namespace posttrain::core
