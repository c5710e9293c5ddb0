#include "core/data/packing.h"

#include <ATen/ATen.h>

#include "core/data/mixture.h"

namespace posttrain::core {

std::vector<std::vector<int64_t>> pack_rows(const std::vector<TokenizedExample>& examples,
                                            const std::vector<int64_t>& order, int64_t max_len) {
  std::vector<std::vector<int64_t>> rows;
  int64_t used = 0;
  for (int64_t i : order) {
    const int64_t len = static_cast<int64_t>(examples[i].ids.size());
    if (rows.empty() || used + len > max_len) {
      rows.emplace_back();
      used = 0;
    }
    rows.back().push_back(i);
    used += len;
  }
  return rows;
}

MicroBatch collate_rows(const std::vector<TokenizedExample>& examples,
                        const std::vector<std::vector<int64_t>>& rows, bool packed,
                        int64_t pad_id) {
  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t T = 1;
  std::vector<int64_t> lengths(B, 0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i : rows[b]) lengths[b] += static_cast<int64_t>(examples[i].ids.size());
    T = std::max(T, lengths[b]);
  }
  auto i64 = at::TensorOptions().dtype(at::kLong);
  at::Tensor ids = at::full({B, T}, pad_id, i64);       // [B, T]
  at::Tensor targets = at::full({B, T}, -100, i64);     // [B, T]
  at::Tensor positions = at::zeros({B, T}, i64);        // [B, T]
  at::Tensor documents = at::zeros({B, T}, i64);        // [B, T]
  at::Tensor mask = at::zeros({B, T}, i64);             // [B, T]
  auto ids_a = ids.accessor<int64_t, 2>();
  auto tgt_a = targets.accessor<int64_t, 2>();
  auto pos_a = positions.accessor<int64_t, 2>();
  auto doc_a = documents.accessor<int64_t, 2>();
  auto mask_a = mask.accessor<int64_t, 2>();
  MicroBatch mb;
  mb.num_rows = B;
  mb.rows_independent = true;  // each example, and so each target, lies in one row
  bool padded = false;
  for (int64_t b = 0; b < B; ++b) {
    int64_t t = 0, doc = 0;
    for (int64_t i : rows[b]) {
      const auto& ex = examples[i];
      for (size_t k = 0; k < ex.ids.size(); ++k, ++t) {
        ids_a[b][t] = ex.ids[k];
        tgt_a[b][t] = ex.targets[k];
        pos_a[b][t] = static_cast<int64_t>(k);
        doc_a[b][t] = doc;
        mask_a[b][t] = 1;
        mb.num_terms += ex.targets[k] != -100;
      }
      ++doc;
    }
    mb.num_tokens += t;
    padded = padded || t < T;
    for (int64_t p = 0; t < T; ++t, ++p) {  // padding: a document of its own
      pos_a[b][t] = p;
      doc_a[b][t] = doc;
    }
  }
  mb.tensors["input_ids"] = ids;
  mb.tensors["targets"] = targets;
  if (packed) {
    mb.tensors["position_ids"] = positions;
    mb.tensors["document_ids"] = documents;
  }
  if (padded) mb.tensors["attention_mask"] = mask;
  return mb;
}

TokenRowDataset::TokenRowDataset(std::shared_ptr<const std::vector<TokenizedExample>> examples,
                                 PackingOptions options)
    : examples_(std::move(examples)), options_(options) {}

const std::vector<std::vector<int64_t>>& TokenRowDataset::layout(int64_t epoch) {
  for (const auto& [e, rows] : cache_) {
    if (e == epoch) return rows;
  }
  const int64_t n = static_cast<int64_t>(examples_->size());
  std::vector<int64_t> order;
  if (options_.shuffle) {
    order = seeded_permutation(n, options_.seed * 6364136223846793005ULL + epoch + 1);
  } else {
    order.resize(n);
    for (int64_t i = 0; i < n; ++i) order[i] = i;
  }
  std::vector<std::vector<int64_t>> rows;
  if (options_.packing) {
    rows = pack_rows(*examples_, order, options_.max_seq_len);
  } else {
    for (int64_t i : order) rows.push_back({i});
  }
  if (cache_.size() >= 2) cache_.erase(cache_.begin());
  cache_.emplace_back(epoch, std::move(rows));
  return cache_.back().second;
}

int64_t TokenRowDataset::num_rows(int64_t epoch) {
  return static_cast<int64_t>(layout(epoch).size());
}

MicroBatch TokenRowDataset::collate(const std::vector<RowRef>& refs) {
  std::vector<std::vector<int64_t>> rows;
  rows.reserve(refs.size());
  for (const auto& r : refs) rows.push_back(layout(r.epoch).at(r.row));
  return collate_rows(*examples_, rows, options_.packing, options_.pad_id);
}

}  // namespace posttrain::core
