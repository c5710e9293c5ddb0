// Token examples, the form every stage's text takes before mixing and packing: ids plus
// next-token targets (kIgnoreTarget where there is no loss). Stage-specific readers (SFT's in
// sft/sft_examples.h) produce them.
#pragma once

#include <cstdint>
#include <vector>

namespace posttrain::core {

// A tokenised example: targets[t] is the token position t must predict (ids[t + 1] where that
// token is trained on), kIgnoreTarget (-100, core/logprobs.h) elsewhere, so targets has the same
// length as ids.
struct TokenizedExample {
  std::vector<int64_t> ids;
  std::vector<int64_t> targets;
  int64_t num_targets() const;
};

// Shifts a per-token training mask (1 = train on this token) into next-token targets.
TokenizedExample make_targets(std::vector<int64_t> ids, const std::vector<uint8_t>& mask);

}  // namespace posttrain::core
