// See attention_spans.h. The spans come from one pass over each row on the CPU (ids read back
// once per forward; the model's layers dwarf it), which also checks the layout rules.
#include "core/model/attention_spans.h"

#include <ATen/ATen.h>

#include <set>
#include <string>

#include "common/error.h"

namespace posttrain::core {
namespace {

[[noreturn]] void layout_error(int64_t b, int64_t t, const std::string& rule) {
  throw UsageError("segment_ids: row " + std::to_string(b) + ", token " + std::to_string(t) +
                   ": " + rule);
}

// One row: ids and the spans to fill, all of length T.
void row_spans(const int64_t* seg, const int64_t* doc, const int64_t* real, int64_t T, int64_t b,
               int64_t* ds, int64_t* pe, int64_t* ss) {
  std::set<int64_t> docs_seen, segs_seen;  // in this row; segments of the current document
  bool in_doc = false;
  int64_t cur_doc = 0, doc_start = 0, prefix_end = 0, cur_seg = -1, seg_start = 0;
  for (int64_t t = 0; t < T; ++t) {
    if (real && !real[t]) {  // padding: only itself
      ds[t] = pe[t] = ss[t] = t;
      continue;
    }
    const int64_t d = doc ? doc[t] : 0, s = seg[t];
    if (s < 0) layout_error(b, t, "segment id " + std::to_string(s) + " is negative");
    if (!in_doc || d != cur_doc) {
      if (!docs_seen.insert(d).second) {
        layout_error(b, t, "document " + std::to_string(d) + " is not one run of the row");
      }
      in_doc = true;
      cur_doc = d;
      doc_start = prefix_end = t;
      cur_seg = -1;
      segs_seen.clear();
    }
    if (s == 0) {
      if (cur_seg > 0) {
        layout_error(b, t, "a prefix token (segment 0) after segment " +
                               std::to_string(cur_seg) + " of its document");
      }
      cur_seg = 0;
      prefix_end = t + 1;
      ds[t] = pe[t] = ss[t] = doc_start;
      continue;
    }
    if (s != cur_seg) {
      if (!segs_seen.insert(s).second) {
        layout_error(b, t, "segment " + std::to_string(s) + " of document " +
                               std::to_string(d) + " is not one run");
      }
      cur_seg = s;
      seg_start = t;
    }
    ds[t] = doc_start;
    pe[t] = prefix_end;
    ss[t] = seg_start;
  }
}

}  // namespace

KeySpans segment_spans(const at::Tensor& segment_ids, const at::Tensor& document_ids,
                       const at::Tensor& attention_mask) {
  if (!segment_ids.defined() || segment_ids.dim() != 2) {
    throw UsageError("segment_ids must be a [B, T] integer tensor");
  }
  const int64_t B = segment_ids.size(0), T = segment_ids.size(1);
  auto cpu_long = [&](const at::Tensor& x, const char* name) {
    if (!x.defined()) return at::Tensor();
    if (x.sizes() != segment_ids.sizes()) {
      throw UsageError(std::string(name) + " must have segment_ids' shape [B, T]");
    }
    return x.to(at::kCPU).to(at::kLong).contiguous();
  };
  const auto seg = cpu_long(segment_ids, "segment_ids");
  const auto doc = cpu_long(document_ids, "document_ids");
  const auto real = cpu_long(attention_mask, "attention_mask");
  KeySpans spans{at::empty({B, T}, at::kLong), at::empty({B, T}, at::kLong),
                 at::empty({B, T}, at::kLong)};
  for (int64_t b = 0; b < B; ++b) {
    const int64_t off = b * T;
    row_spans(seg.data_ptr<int64_t>() + off, doc.defined() ? doc.data_ptr<int64_t>() + off : nullptr,
              real.defined() ? real.data_ptr<int64_t>() + off : nullptr, T, b,
              spans.doc_start.data_ptr<int64_t>() + off, spans.prefix_end.data_ptr<int64_t>() + off,
              spans.seg_start.data_ptr<int64_t>() + off);
  }
  return spans;
}

at::Tensor span_positions(const KeySpans& spans) {
  const int64_t T = spans.doc_start.size(1);
  const auto t = at::arange(T, at::kLong).unsqueeze(0);  // [1, T]
  return (spans.prefix_end - spans.doc_start) + (t - spans.seg_start);
}

at::Tensor span_mask(const KeySpans& spans, const at::Tensor& attention_mask, at::Device device) {
  const int64_t T = spans.doc_start.size(1);
  const auto opts = at::TensorOptions().dtype(at::kLong).device(device);
  const auto key = at::arange(T, opts).view({1, 1, T});   // [1, 1, T]
  const auto query = at::arange(T, opts).view({1, T, 1});  // [1, T, 1]
  const auto ds = spans.doc_start.to(device).unsqueeze(2);  // [B, T, 1]
  const auto pe = spans.prefix_end.to(device).unsqueeze(2);
  const auto ss = spans.seg_start.to(device).unsqueeze(2);
  auto m = key.ge(ds).logical_and(key.lt(pe))
               .logical_or(key.ge(ss).logical_and(key.le(query)));  // [B, T, T]
  if (attention_mask.defined()) {
    m = m.logical_and(attention_mask.to(device).to(at::kBool).unsqueeze(1));
    m = m.logical_or(key.eq(query));
  }
  return m.unsqueeze(1);
}

}  // namespace posttrain::core
