// ATen reference of the fused log-softmax + gather (see logprob_gather.h). Works on any device
// ATen supports, so it is the CPU path and the oracle for CUDA kernels.
#include "kernels/logprob_gather.h"

#include <ATen/ATen.h>

namespace posttrain::kernels {
namespace {

void check_args(const at::Tensor& logits, const at::Tensor& targets, bool check_targets) {
  TORCH_CHECK(logits.dim() == 2, "logprob_gather: logits must be [N, V], got ", logits.sizes());
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0),
              "logprob_gather: targets must be [N] with N = ", logits.size(0), ", got ",
              targets.sizes());
  TORCH_CHECK(targets.scalar_type() == at::kLong, "logprob_gather: targets must be int64");
  if (!check_targets || targets.numel() == 0) return;
  const auto valid = targets.ne(kIgnoreIndex);
  const auto bad = valid.logical_and(targets.lt(0).logical_or(targets.ge(logits.size(1))));
  TORCH_CHECK(!bad.any().item<bool>(), "logprob_gather: target id outside [0, ", logits.size(1),
              ")");
}

}  // namespace

at::Tensor logprob_gather(const at::Tensor& logits, const at::Tensor& targets,
                          bool check_targets) {
  check_args(logits, targets, check_targets);
  const auto x = logits.to(at::kFloat);                           // [N, V]
  const auto valid = targets.ne(kIgnoreIndex);                    // [N]
  const auto safe = targets.masked_fill(~valid, 0);               // [N]
  const auto lse = at::logsumexp(x, {1});                         // [N]
  const auto picked = x.gather(1, safe.unsqueeze(1)).squeeze(1);  // [N]
  return (picked - lse).masked_fill(~valid, 0.0);
}

at::Tensor logprob_gather_backward(const at::Tensor& logits, const at::Tensor& targets,
                                   const at::Tensor& grad_out, bool check_targets) {
  check_args(logits, targets, check_targets);
  const auto valid = targets.ne(kIgnoreIndex);                                   // [N]
  const auto safe = targets.masked_fill(~valid, 0);                              // [N]
  const auto g = grad_out.to(at::kFloat).masked_fill(~valid, 0.0);               // [N]
  auto grad = at::softmax(logits.to(at::kFloat), 1).mul_(g.neg().unsqueeze(1));  // [N, V]
  grad.scatter_add_(1, safe.unsqueeze(1), g.unsqueeze(1));
  return grad;
}

}  // namespace posttrain::kernels
