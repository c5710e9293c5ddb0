// The reward model's pairwise loss. Every ordered pair (better, worse) of a ranking is one term:
//   -log sigmoid(r_better - r_worse - m) + c * (r_better + r_worse)^2
// m: the pair's strength margin (datastore/strength.h; Llama 2's margin loss) when use_margin,
// else 0 (Llama 3 dropped it). c: TRL's center_rewards_coefficient, which pulls each pair's
// rewards towards a zero mean (0 = off). A ranking edited > chosen > rejected gives three terms.
// The loss returns SUMS over the micro-batch's pairs; the trainer divides by the step's pair count.
#pragma once

#include <ATen/core/Tensor.h>

namespace posttrain::reward {

struct PairwiseLossOptions {
  bool use_margin = false;
  double center_coefficient = 0.0;
};

// Pairs of a micro-batch, per example b (the rows of the trainer's micro-batch), P slots each:
struct PairTensors {
  at::Tensor better;  // [B, P] int64 response slot (0..K-1) of the better response
  at::Tensor worse;   // [B, P] int64 response slot of the worse one
  at::Tensor margin;  // [B, P] float32 strength margin (used when use_margin)
  at::Tensor mask;    // [B, P] float32, 1 = a real pair, 0 = padding
};

struct PairwiseLossSums {
  at::Tensor loss;      // float32 scalar under autograd: sum of the terms above
  // Detached float32 scalars, sums over real pairs:
  at::Tensor correct;   // 1[r_better > r_worse] (a tie counts as wrong)
  at::Tensor margin;    // r_better - r_worse
  at::Tensor chosen;    // r_better
  at::Tensor rejected;  // r_worse
};

// rewards: [B, K] float32, one per response slot (padding slots are never named by a real pair).
PairwiseLossSums pairwise_loss_sums(const at::Tensor& rewards, const PairTensors& pairs,
                                    const PairwiseLossOptions& options);

}  // namespace posttrain::reward
