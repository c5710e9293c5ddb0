// Per-token log-probabilities of given targets under a causal LM, chunked over tokens so the
// full [tokens, vocab] float32 logits never exist at once. Differentiable: under autograd the
// logits of the head (compute dtype) are kept for backward when they fit keep_logits_bytes, else
// backward recomputes each chunk's logits so memory stays at one chunk in both directions. SFT loss, DPO, reference log-probs, evaluation and `posttrain logprobs`
// all go through target_logprobs.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "core/model/llama.h"

namespace posttrain::core {

constexpr int64_t kIgnoreTarget = -100;
// Budget for the head's logits kept between forward and backward (4 GiB: a micro-batch of 8K
// tokens with a 128K vocabulary in bf16 needs 2 GiB; training.keep_logits_mb sets it per run).
constexpr int64_t kDefaultKeepLogitsBytes = int64_t{4} << 30;

// hidden: [B, T, H] final-norm hidden states (model.hidden_states); targets: [B, T] int64 ids,
// kIgnoreTarget = no target. Returns [B, T] float32: log softmax(lm_head(hidden[b, t]))[target],
// 0 where ignored. Rows with ignored targets cost nothing (they are skipped before the head).
// Gradients flow to `hidden` and to the LM head weight. Throws UsageError on a reward model.
at::Tensor target_logprobs(LlamaModelImpl& model, const at::Tensor& hidden,
                           const at::Tensor& targets, int64_t chunk_tokens = 1024,
                           int64_t keep_logits_bytes = kDefaultKeepLogitsBytes);

// Runs the model and returns [B, T-1] float32 where element t = log p(ids[t+1] | ids[..t]).
// Positions whose next token is padding (attention_mask 0), starts another document (packed
// rows, document_ids) or, after a segment, starts another segment (segment_ids) get 0. Does not change grad mode: call under at::NoGradGuard (or
// InferenceMode) to score without a graph.
at::Tensor token_logprobs(LlamaModelImpl& model, const ForwardInputs& in,
                          int64_t chunk_tokens = 1024);

// Per-segment sums of per-token values: values [B, T] (any float dtype, e.g. token_logprobs
// padded back to T or target_logprobs' output), segment_index [B, T] int64 (the segment each
// token counts toward, -1 = none; core/data/shared_prefix.h's SharedPrefixBatch::segment_index)
// -> [num_segments] float32, differentiable in values.
at::Tensor segment_sums(const at::Tensor& values, const at::Tensor& segment_index,
                        int64_t num_segments);

}  // namespace posttrain::core
