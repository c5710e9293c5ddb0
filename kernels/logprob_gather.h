// Fused log-softmax + gather over the vocabulary for one chunk of tokens: the hot op behind
// every per-token log-prob (SFT loss, DPO, reference log-probs, `posttrain logprobs`).
// This header takes and returns at::Tensor; the ATen reference below is the CPU path and the
// oracle that any device kernel is tested against. Math is float32 whatever the logits dtype.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace posttrain::kernels {

constexpr int64_t kIgnoreIndex = -100;

// logits: [N, V] (float32/bf16/f16); targets: [N] int64, kIgnoreIndex marks "no target".
// Returns [N] float32: log softmax(logits[n])[targets[n]], and 0 where targets[n] is ignored.
// A target outside [0, V) other than kIgnoreIndex throws c10::Error. That check reads a value
// back from the device; a caller that validated the targets once passes check_targets = false.
at::Tensor logprob_gather(const at::Tensor& logits, const at::Tensor& targets,
                          bool check_targets = true);

// Gradient of sum_n grad_out[n] * logprob_gather(logits, targets)[n] with respect to logits:
// [N, V] float32, row n = grad_out[n] * (onehot(targets[n]) - softmax(logits[n])), zero rows
// where the target is ignored. grad_out: [N] float32.
at::Tensor logprob_gather_backward(const at::Tensor& logits, const at::Tensor& targets,
                                   const at::Tensor& grad_out, bool check_targets = true);

}  // namespace posttrain::kernels
