// Pair rows (see pair_rows.h).
#include "dpo/pair_rows.h"

#include <ATen/ATen.h>

#include "core/data/mixture.h"

namespace posttrain::dpo {

core::SharedPrefixDocument pair_document(const TokenizedPair& p) {
  std::vector<uint8_t> chosen_targets(p.chosen.size());
  for (size_t i = 0; i < p.chosen.size(); ++i) {
    chosen_targets[i] = p.chosen_mask[i] | p.chosen_nll_mask[i];
  }
  return core::shared_prefix_document(p.prompt, {p.chosen, p.rejected},
                                      {chosen_targets, p.rejected_mask});
}

core::MicroBatch collate_pair_rows(const std::vector<TokenizedPair>& pairs,
                                   const std::vector<core::SharedPrefixDocument>& documents,
                                   const std::vector<RefValues>* refs,
                                   const std::vector<std::vector<int64_t>>& rows, int64_t pad_id) {
  const core::SharedPrefixBatch sp = core::collate_shared_prefix(documents, rows, pad_id);
  const int64_t B = sp.input_ids.size(0), T = sp.input_ids.size(1);
  int64_t K = 1;
  for (const auto& r : rows) K = std::max<int64_t>(K, r.size());
  at::Tensor slot = at::full({B, T}, -1, at::kLong);        // [B, T]
  at::Tensor nll = at::zeros({B, T}, at::kFloat);           // [B, T]
  at::Tensor ref = at::zeros({B, K, 2}, at::kFloat);        // [B, K, 2]
  at::Tensor counts = at::zeros({B, K, 2}, at::kFloat);     // [B, K, 2]
  at::Tensor valid = at::zeros({B, K}, at::kBool);          // [B, K]
  auto slot_a = slot.accessor<int64_t, 2>();
  auto nll_a = nll.accessor<float, 2>();
  auto ref_a = ref.accessor<float, 3>();
  auto counts_a = counts.accessor<float, 3>();
  auto valid_a = valid.accessor<bool, 2>();
  core::MicroBatch mb;
  // Segments come in row order, each document's chosen then rejected: the k-th document seen in
  // a row is that row's pair slot k.
  std::vector<int64_t> next_k(B, 0), k_of_doc(documents.size(), -1);
  for (const auto& s : sp.segments) {
    if (k_of_doc[s.document] < 0) k_of_doc[s.document] = next_k[s.row]++;
    const int64_t k = k_of_doc[s.document];
    const TokenizedPair& p = pairs[s.document];
    const bool chosen = s.segment == 0;
    const auto& mask = chosen ? p.chosen_mask : p.rejected_mask;
    for (size_t j = 0; j < mask.size(); ++j) {
      const int64_t t = s.span.begin + static_cast<int64_t>(j);  // predicts response[j]
      if (mask[j]) slot_a[s.row][t] = 2 * k + (chosen ? 0 : 1);
      if (chosen && p.chosen_nll_mask[j]) nll_a[s.row][t] = 1.0f;
    }
    const int64_t side = chosen ? 0 : 1;
    counts_a[s.row][k][side] = static_cast<float>(chosen ? p.chosen_count() : p.rejected_count());
    if (refs) {
      const RefValues& v = (*refs)[s.document];
      ref_a[s.row][k][side] = static_cast<float>(chosen ? v.chosen : v.rejected);
    }
    valid_a[s.row][k] = true;
    if (chosen) {
      mb.num_terms += 1;
      mb.counts["target_tokens"] += p.nll_count();
      mb.counts["chosen_tokens"] += p.chosen_count();
    } else {
      mb.counts["rejected_tokens"] += p.rejected_count();
    }
  }
  mb.tensors["input_ids"] = sp.input_ids;
  mb.tensors["position_ids"] = sp.position_ids;
  mb.tensors["document_ids"] = sp.document_ids;
  mb.tensors["segment_ids"] = sp.segment_ids;
  mb.tensors["targets"] = sp.targets;
  if (sp.attention_mask.defined()) mb.tensors["attention_mask"] = sp.attention_mask;
  mb.tensors["dpo_slot"] = slot;
  mb.tensors["nll_mask"] = nll;
  mb.tensors["ref_logps"] = ref;
  mb.tensors["pair_counts"] = counts;
  mb.tensors["pair_valid"] = valid;
  mb.num_tokens = sp.num_tokens;
  mb.num_rows = B;
  mb.rows_independent = true;  // each pair lies whole in one row
  // Every batch carries the same count keys (the trainer sums them by name).
  for (const char* k : {"target_tokens", "chosen_tokens", "rejected_tokens"}) mb.counts[k] += 0;
  return mb;
}

PairRowDataset::PairRowDataset(std::shared_ptr<const std::vector<TokenizedPair>> pairs,
                               std::shared_ptr<const std::vector<RefValues>> refs,
                               PairRowOptions options)
    : pairs_(std::move(pairs)), refs_(std::move(refs)), options_(options) {
  documents_.reserve(pairs_->size());
  for (const auto& p : *pairs_) documents_.push_back(pair_document(p));
}

const std::vector<std::vector<int64_t>>& PairRowDataset::layout(int64_t epoch) {
  for (const auto& [e, rows] : cache_) {
    if (e == epoch) return rows;
  }
  const int64_t n = num_pairs();
  std::vector<int64_t> order;
  if (options_.shuffle) {
    order = core::seeded_permutation(n, options_.seed * 6364136223846793005ULL + epoch + 1);
  } else {
    for (int64_t i = 0; i < n; ++i) order.push_back(i);
  }
  std::vector<std::vector<int64_t>> rows;
  if (options_.packing) {
    rows = core::pack_shared_prefix(documents_, order, options_.max_row_tokens);
  } else {
    for (int64_t i : order) rows.push_back({i});
  }
  if (cache_.size() >= 2) cache_.erase(cache_.begin());
  cache_.emplace_back(epoch, std::move(rows));
  return cache_.back().second;
}

int64_t PairRowDataset::num_rows(int64_t epoch) {
  return static_cast<int64_t>(layout(epoch).size());
}

core::MicroBatch PairRowDataset::collate(const std::vector<core::RowRef>& refs) {
  std::vector<std::vector<int64_t>> rows;
  rows.reserve(refs.size());
  for (const auto& r : refs) rows.push_back(layout(r.epoch).at(r.row));
  return collate_pair_rows(*pairs_, documents_, refs_.get(), rows, options_.pad_id);
}

}  // namespace posttrain::dpo
