// Causal self-attention on CPU float32, optionally confined to documents (packed rows) and to
// shared-prefix segments (a prompt once, then responses that each see the prompt and
// themselves), with grouped kv heads read in place. It stands in for at::scaled_dot_product_attention on the CPU
// training path: ATen's CPU flash kernel runs its small-head-dim GEMMs at a fraction of what
// the BLAS gives the same shapes, and its masked path needs a dense [B, 1, T, T] mask and kv
// heads copied out per query head. Here each block of 64 query rows is two BLAS GEMMs forward
// (scores against the keys it may see, then probabilities times values) and five backward
// (scores recomputed from the saved log-sum-exp, as flash attention does: memory stays O(T)).
#pragma once

#include <ATen/core/Tensor.h>

namespace posttrain::kernels {

// False when the environment sets POSTTRAIN_NO_CPU_ATTENTION (for A/B runs against ATen's
// attention): callers then take ATen's path.
bool causal_attention_enabled();
// Tests: false makes causal_attention_enabled() false too (ATen's attention in process).
bool& causal_attention_allowed();

// True when causal_attention takes these tensors: CPU float32 q, k, v with unit stride in the
// last dimension. Otherwise use ATen's attention.
bool causal_attention_supported(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// q [B, T, nh, D], k and v [B, T, nkv, D] (nh a multiple of nkv; query head h reads kv head
// h / (nh / nkv)); any strides with the last one 1 (so q, k, v may be column blocks of one
// projection). doc_start: undefined, or [B, T] int64 with doc_start[b, t] <= t the first index
// of token t's document: token t attends to keys doc_start[b, t] .. t (plain causal when
// undefined). scale multiplies q.k. Returns [B, T, nh, D] contiguous (a free view as
// [B, T, nh * D]); differentiable in q, k and v.
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& doc_start, double scale);

// Shared-prefix form: token t attends to keys [doc_start[b, t], prefix_end[b, t]) and
// [seg_start[b, t], t], so a segment of a document sees the document's prefix and itself only
// (its own run of tokens, causally), never the segments before it. All three [B, T] int64 with
// 0 <= doc_start <= prefix_end <= seg_start <= t; a plain document token has prefix_end =
// seg_start = doc_start, which is the first form. Same q, k, v, scale, result and gradients.
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& doc_start, const at::Tensor& prefix_end,
                            const at::Tensor& seg_start, double scale);

// doc_start for causal_attention from per-token document ids [B, T] (any integer dtype), when
// every document is one contiguous run of its row (ids never return after another id); an
// undefined tensor otherwise, in which case a dense mask is needed.
at::Tensor document_starts(const at::Tensor& document_ids);

// The first index of the run of equal ids each token is in: [B, T] int64 from ids [B, T] (any
// integer dtype, any device). Equals document_starts where that is defined.
at::Tensor run_starts(const at::Tensor& ids);

// Tests: false makes causal_attention use ATen's mm for its GEMMs instead of the BLAS entry
// point LibTorch exports (when this build found one).
bool& attention_blas_allowed();

}  // namespace posttrain::kernels
