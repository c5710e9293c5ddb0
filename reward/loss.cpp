// The pairwise Bradley-Terry loss (see loss.h).
#include "reward/loss.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

namespace posttrain::reward {

PairwiseLossSums pairwise_loss_sums(const at::Tensor& rewards, const PairTensors& pairs,
                                    const PairwiseLossOptions& options) {
  const auto r = rewards.to(at::kFloat);                    // [B, K]
  const auto mask = pairs.mask.to(r.device(), at::kFloat);  // [B, P]
  const auto rb = r.gather(1, pairs.better.to(r.device()));  // [B, P]
  const auto rw = r.gather(1, pairs.worse.to(r.device()));   // [B, P]
  auto diff = rb - rw;                                        // [B, P]
  auto logit = diff;
  if (options.use_margin) logit = diff - pairs.margin.to(r.device(), at::kFloat);
  // -log sigmoid(x) = softplus(-x), stable for large |x|.
  auto terms = at::softplus(-logit);  // [B, P]
  if (options.center_coefficient != 0.0) {
    terms = terms + options.center_coefficient * (rb + rw).pow(2);
  }
  PairwiseLossSums out;
  out.loss = (terms * mask).sum();
  c10::NoGradGuard no_grad;
  out.correct = (diff.detach().gt(0).to(at::kFloat) * mask).sum();
  out.margin = (diff.detach() * mask).sum();
  out.chosen = (rb.detach() * mask).sum();
  out.rejected = (rw.detach() * mask).sum();
  return out;
}

}  // namespace posttrain::reward
