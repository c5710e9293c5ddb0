// Which keys each token of a shared-prefix row attends to. A row holds documents; a document
// may be a prefix (segment id 0) followed by segments (ids >= 1): a prefix token sees the
// prefix before it, a segment token sees its document's whole prefix and its own segment up to
// itself. Written as spans per token, token t sees [doc_start, prefix_end) and [seg_start, t],
// which is what our CPU attention kernel takes (kernels/causal_attention.h); elsewhere the same
// spans become a dense boolean mask for at::scaled_dot_product_attention.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace posttrain::core {

// [B, T] int64 on the CPU each.
struct KeySpans {
  at::Tensor doc_start, prefix_end, seg_start;
  bool defined() const { return doc_start.defined(); }
};

// Spans of rows given segment ids [B, T] (0 = the prefix of its document, s >= 1 = segment s),
// document ids [B, T] (undefined: one document per row) and an attention mask [B, T] (1 = real
// token; undefined: all real), on any device. Padding tokens are left out of the layout and see
// only themselves. The layout rules (each document one run of its row's real tokens, its prefix
// first, each segment one run, ids >= 0) are checked: a break throws UsageError naming the row,
// the token and the rule.
KeySpans segment_spans(const at::Tensor& segment_ids, const at::Tensor& document_ids,
                       const at::Tensor& attention_mask);

// Positions for rows without position_ids: a prefix token's distance to its document's start,
// a segment token's prefix length plus its distance to its segment's start (every segment
// continues the prompt: the layout in core/data/shared_prefix.h). [B, T] int64, CPU.
at::Tensor span_positions(const KeySpans& spans);

// The spans as a boolean mask [B, 1, T, T] on `device` (true = may attend). Keys that are
// padding (attention_mask 0, when given) are hidden, and every token sees itself, so padding
// rows never come out all false.
at::Tensor span_mask(const KeySpans& spans, const at::Tensor& attention_mask, at::Device device);

}  // namespace posttrain::core
