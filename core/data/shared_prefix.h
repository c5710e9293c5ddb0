// Shared-prefix rows: a prompt once, then K responses that each see the prompt and themselves
// only (ForwardInputs::segment_ids), so DPO's chosen + rejected, or a reward model's K ranked
// responses, cost one prompt instead of K. Layout of one prompt of P tokens (P >= 1):
//   prefix     = prompt[0 .. P-2]                      segment id 0, positions 0 .. P-2
//   segment k  = [prompt[P-1], responses[k][0 ..]]     segment id k+1, positions P-1, P, ...
// The last prompt token is repeated at the head of every segment, so each segment's first token
// predicts its response's first token and next-token targets stay per token: the log-probs and
// rewards of a segment equal those of the row prompt + responses[k] alone. A segment's reward
// is read at its last token. Packing lays several such documents into one row, as SFT packing
// does (greedy, one document never split), with document ids per token and right padding.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "core/model/llama.h"

namespace posttrain::core {

// Tokens [begin, end) of one segment (prompt[P-1] and its response) in its document or row.
struct SegmentSpan {
  int64_t begin = 0, end = 0;
  int64_t last() const { return end - 1; }  // where its reward is read
};

// One prompt with its responses, laid out as above. targets[t] is the id token t predicts or
// -100: the response tokens whose mask is 1, predicted by the token before them; prompt tokens
// are never targets and a segment's last token predicts nothing.
struct SharedPrefixDocument {
  std::vector<int64_t> ids, positions, segment_ids, targets;  // one per token
  std::vector<SegmentSpan> segments;                          // one per response, in order
  int64_t size() const { return static_cast<int64_t>(ids.size()); }
};

// prompt: P >= 1 tokens; responses: K >= 1; response_masks: empty (every response token is a
// target) or one mask per response of its length (1 = target). Throws UsageError otherwise.
SharedPrefixDocument shared_prefix_document(
    const std::vector<int64_t>& prompt, const std::vector<std::vector<int64_t>>& responses,
    const std::vector<std::vector<uint8_t>>& response_masks = {});

// Greedy packing of documents (in the given order) into rows of at most max_len tokens; a
// document longer than max_len gets a row of its own. Returns the document indices per row.
std::vector<std::vector<int64_t>> pack_shared_prefix(
    const std::vector<SharedPrefixDocument>& documents, const std::vector<int64_t>& order,
    int64_t max_len);

// Where one segment of one document landed in a collated batch.
struct PackedSegment {
  int64_t document = 0;  // index into the documents given to collate_shared_prefix
  int64_t segment = 0;   // response index k within its document
  int64_t row = 0;       // batch row
  SegmentSpan span;      // token range within the row
};

// Rows of documents collated into [B, T] tensors (T = the longest row), CPU int64.
struct SharedPrefixBatch {
  at::Tensor input_ids, position_ids, document_ids, segment_ids, targets;
  // 1 = real token, 0 = padding; undefined when no row is padded. Padding gets a document of its
  // own (segment id 0, positions from 0, target -100), as in SFT collation.
  at::Tensor attention_mask;
  // Every segment of every document: documents in row order, each document's segments in
  // response order. N = segments.size().
  std::vector<PackedSegment> segments;
  // [B, T] int64: the index into `segments` of each segment token, -1 for prefix and padding.
  // Per-segment sums of per-token values: segment_sums (core/logprobs.h).
  at::Tensor segment_index;
  // [N] int64: each segment's last token as a flat index b * T + t (rewards).
  at::Tensor segment_last;
  int64_t num_tokens = 0;  // real tokens

  // The model's inputs (ids, positions, documents, mask, segments).
  ForwardInputs forward_inputs() const;
};

// rows: document indices per row (pack_shared_prefix, or one document per row).
SharedPrefixBatch collate_shared_prefix(const std::vector<SharedPrefixDocument>& documents,
                                        const std::vector<std::vector<int64_t>>& rows,
                                        int64_t pad_id);

}  // namespace posttrain::core
