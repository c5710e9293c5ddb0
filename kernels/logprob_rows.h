// Log-softmax + gather over a whole [M, V] logits matrix kept between forward and backward (the
// "kept logits" path of core/logprobs): forward gives each row's logsumexp and target log-prob,
// backward overwrites the logits with their gradient, so the only [M, V] buffer is the logits
// themselves. On CUDA builds with our kernels each direction is one pass over the logits in
// their own dtype, and on CPU float32 one pass per row (our loops); elsewhere ATen works through
// `chunk` rows at a time in float32.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace posttrain::kernels {

// Whether CUDA tensors go through our kernels: built with POSTTRAIN_CUDA and not switched off
// by POSTTRAIN_NO_CUDA_KERNELS in the environment (benchmarks report it).
bool cuda_kernels_enabled();

// logits [M, V] (float32 or bf16, contiguous); targets [M] int64, all in [0, V).
// Returns {lse [M], logprob [M]}, both float32.
std::pair<at::Tensor, at::Tensor> logprob_rows_forward(const at::Tensor& logits,
                                                       const at::Tensor& targets, int64_t chunk);

// In place: logits[r] <- grad[r] * (onehot(targets[r]) - softmax(logits[r])), using the lse of
// the forward. grad [M] float32.
void logprob_rows_backward_(at::Tensor& logits, const at::Tensor& targets, const at::Tensor& lse,
                            const at::Tensor& grad, int64_t chunk);

}  // namespace posttrain::kernels
