// See shared_prefix.h.
#include "core/data/shared_prefix.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <string>

#include "common/error.h"

namespace posttrain::core {

SharedPrefixDocument shared_prefix_document(
    const std::vector<int64_t>& prompt, const std::vector<std::vector<int64_t>>& responses,
    const std::vector<std::vector<uint8_t>>& response_masks) {
  if (prompt.empty()) throw UsageError("shared-prefix row: the prompt has no tokens");
  if (responses.empty()) throw UsageError("shared-prefix row: no responses");
  if (!response_masks.empty() && response_masks.size() != responses.size()) {
    throw UsageError("shared-prefix row: " + std::to_string(response_masks.size()) +
                     " target masks for " + std::to_string(responses.size()) + " responses");
  }
  const int64_t P = static_cast<int64_t>(prompt.size());
  SharedPrefixDocument doc;
  auto push = [&](int64_t id, int64_t pos, int64_t seg, int64_t target) {
    doc.ids.push_back(id);
    doc.positions.push_back(pos);
    doc.segment_ids.push_back(seg);
    doc.targets.push_back(target);
  };
  for (int64_t t = 0; t + 1 < P; ++t) push(prompt[t], t, 0, -100);
  for (size_t k = 0; k < responses.size(); ++k) {
    const auto& r = responses[k];
    const int64_t n = static_cast<int64_t>(r.size());
    if (!response_masks.empty() && static_cast<int64_t>(response_masks[k].size()) != n) {
      throw UsageError("shared-prefix row: response " + std::to_string(k) + " has " +
                       std::to_string(n) + " tokens but its target mask " +
                       std::to_string(response_masks[k].size()));
    }
    auto target = [&](int64_t i) {  // what segment token i predicts: response token i
      if (i >= n) return int64_t{-100};
      return response_masks.empty() || response_masks[k][i] ? r[i] : int64_t{-100};
    };
    const int64_t seg = static_cast<int64_t>(k) + 1;
    SegmentSpan span{doc.size(), doc.size() + n + 1};
    push(prompt[P - 1], P - 1, seg, target(0));
    for (int64_t i = 0; i < n; ++i) push(r[i], P + i, seg, target(i + 1));
    doc.segments.push_back(span);
  }
  return doc;
}

std::vector<std::vector<int64_t>> pack_shared_prefix(
    const std::vector<SharedPrefixDocument>& documents, const std::vector<int64_t>& order,
    int64_t max_len) {
  std::vector<std::vector<int64_t>> rows;
  int64_t used = 0;
  for (int64_t i : order) {
    const int64_t len = documents.at(i).size();
    if (rows.empty() || used + len > max_len) {
      rows.emplace_back();
      used = 0;
    }
    rows.back().push_back(i);
    used += len;
  }
  return rows;
}

ForwardInputs SharedPrefixBatch::forward_inputs() const {
  ForwardInputs in;
  in.input_ids = input_ids;
  in.position_ids = position_ids;
  in.document_ids = document_ids;
  in.attention_mask = attention_mask;
  in.segment_ids = segment_ids;
  return in;
}

SharedPrefixBatch collate_shared_prefix(const std::vector<SharedPrefixDocument>& documents,
                                        const std::vector<std::vector<int64_t>>& rows,
                                        int64_t pad_id) {
  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t T = 1;
  for (const auto& row : rows) {
    int64_t len = 0;
    for (int64_t i : row) len += documents.at(i).size();
    T = std::max(T, len);
  }
  const auto i64 = at::TensorOptions().dtype(at::kLong);
  SharedPrefixBatch out;
  out.input_ids = at::full({B, T}, pad_id, i64);  // [B, T]
  out.position_ids = at::zeros({B, T}, i64);      // [B, T]
  out.document_ids = at::zeros({B, T}, i64);      // [B, T]
  out.segment_ids = at::zeros({B, T}, i64);       // [B, T]
  out.targets = at::full({B, T}, -100, i64);      // [B, T]
  out.segment_index = at::full({B, T}, -1, i64);  // [B, T]
  auto mask = at::zeros({B, T}, i64);             // [B, T]
  auto ids = out.input_ids.accessor<int64_t, 2>(), pos = out.position_ids.accessor<int64_t, 2>(),
       doc = out.document_ids.accessor<int64_t, 2>(), seg = out.segment_ids.accessor<int64_t, 2>(),
       tgt = out.targets.accessor<int64_t, 2>(), sidx = out.segment_index.accessor<int64_t, 2>(),
       real = mask.accessor<int64_t, 2>();
  std::vector<int64_t> last;
  bool padded = false;
  for (int64_t b = 0; b < B; ++b) {
    int64_t t = 0, d = 0;
    for (int64_t i : rows[b]) {
      const auto& x = documents[i];
      const int64_t base = t;
      for (int64_t j = 0; j < x.size(); ++j, ++t) {
        ids[b][t] = x.ids[j];
        pos[b][t] = x.positions[j];
        doc[b][t] = d;
        seg[b][t] = x.segment_ids[j];
        tgt[b][t] = x.targets[j];
        real[b][t] = 1;
      }
      for (size_t k = 0; k < x.segments.size(); ++k) {
        const SegmentSpan span{base + x.segments[k].begin, base + x.segments[k].end};
        const int64_t n = static_cast<int64_t>(out.segments.size());
        for (int64_t j = span.begin; j < span.end; ++j) sidx[b][j] = n;
        out.segments.push_back({i, static_cast<int64_t>(k), b, span});
        last.push_back(b * T + span.last());
      }
      ++d;
    }
    out.num_tokens += t;
    padded = padded || t < T;
    for (int64_t p = 0; t < T; ++t, ++p) {  // padding: a document of its own
      pos[b][t] = p;
      doc[b][t] = d;
    }
  }
  if (padded) out.attention_mask = mask;
  out.segment_last = at::tensor(last, i64);
  return out;
}

}  // namespace posttrain::core
