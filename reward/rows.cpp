// Ranking micro-batches in the separate and one-row layouts (see rows.h).
#include "reward/rows.h"

#include <algorithm>

#include <ATen/ATen.h>

#include "common/error.h"

namespace posttrain::reward {

Layout parse_layout(const std::string& name) {
  if (name == "separate") return Layout::kSeparate;
  if (name == "one_row") return Layout::kOneRow;
  throw UsageError("unknown reward layout '" + name + "' (separate, one_row)");
}

std::vector<int> segment_order(int64_t index, size_t responses, uint64_t seed) {
  const auto perm = core::seeded_permutation(
      static_cast<int64_t>(responses),
      seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(index) * 2654435761ULL + 7);
  return std::vector<int>(perm.begin(), perm.end());
}

namespace {

// The pair tensors of `rows`, P = most pairs of any row.
void add_pairs(const std::vector<const RankedTokens*>& rows, core::MicroBatch* mb) {
  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t P = 0;
  for (const auto* r : rows) P = std::max<int64_t>(P, static_cast<int64_t>(r->pairs.size()));
  auto better = at::zeros({B, P}, at::kLong), worse = at::zeros({B, P}, at::kLong);
  auto margin = at::zeros({B, P}, at::kFloat), mask = at::zeros({B, P}, at::kFloat);
  auto b_a = better.accessor<int64_t, 2>(), w_a = worse.accessor<int64_t, 2>();
  auto m_a = margin.accessor<float, 2>(), k_a = mask.accessor<float, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& pairs = rows[static_cast<size_t>(b)]->pairs;
    for (size_t p = 0; p < pairs.size(); ++p) {
      b_a[b][static_cast<int64_t>(p)] = pairs[p].better;
      w_a[b][static_cast<int64_t>(p)] = pairs[p].worse;
      m_a[b][static_cast<int64_t>(p)] = pairs[p].margin;
      k_a[b][static_cast<int64_t>(p)] = 1.0f;
    }
    mb->num_terms += static_cast<int64_t>(pairs.size());
  }
  mb->tensors["pair_better"] = better;
  mb->tensors["pair_worse"] = worse;
  mb->tensors["pair_margin"] = margin;
  mb->tensors["pair_mask"] = mask;
}

void collate_separate(const std::vector<const RankedTokens*>& rows, int64_t pad,
                      core::MicroBatch* mb) {
  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t K = 0, T = 1;
  for (const auto* r : rows) {
    K = std::max<int64_t>(K, static_cast<int64_t>(r->responses.size()));
    for (size_t k = 0; k < r->responses.size(); ++k) T = std::max(T, r->sequence_length(k));
  }
  auto ids = at::full({B, K, T}, pad, at::kLong), mask = at::zeros({B, K, T}, at::kLong);
  auto last = at::zeros({B, K}, at::kLong);
  auto i_a = ids.accessor<int64_t, 3>(), m_a = mask.accessor<int64_t, 3>();
  auto l_a = last.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& r = *rows[static_cast<size_t>(b)];
    for (int64_t k = 0; k < K; ++k) {
      if (k >= static_cast<int64_t>(r.responses.size())) {
        m_a[b][k][0] = 1;  // an unused slot: one pad token no pair reads (keeps softmax finite)
        continue;
      }
      int64_t t = 0;
      for (int64_t id : r.prompt) i_a[b][k][t++] = id;
      for (int64_t id : r.responses[static_cast<size_t>(k)]) i_a[b][k][t++] = id;
      for (int64_t u = 0; u < t; ++u) m_a[b][k][u] = 1;
      l_a[b][k] = t - 1;
      mb->num_tokens += t;
    }
  }
  mb->tensors["input_ids"] = ids;
  mb->tensors["attention_mask"] = mask;
  mb->tensors["reward_index"] = last;
}

void collate_one_row(const std::vector<const RankedTokens*>& rows,
                     const std::vector<int64_t>& which, const RowOptions& o,
                     core::MicroBatch* mb) {
  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t K = 0, T = 1;
  for (const auto* r : rows) {
    K = std::max<int64_t>(K, static_cast<int64_t>(r->responses.size()));
    int64_t n = static_cast<int64_t>(r->prompt.size());
    for (const auto& resp : r->responses) n += static_cast<int64_t>(resp.size());
    T = std::max(T, n);
  }
  auto ids = at::full({B, T}, o.pad_id, at::kLong), pos = at::zeros({B, T}, at::kLong);
  auto seg = at::zeros({B, T}, at::kLong), mask = at::zeros({B, T}, at::kLong);
  auto last = at::zeros({B, K}, at::kLong);
  auto i_a = ids.accessor<int64_t, 2>(), p_a = pos.accessor<int64_t, 2>();
  auto s_a = seg.accessor<int64_t, 2>(), m_a = mask.accessor<int64_t, 2>();
  auto l_a = last.accessor<int64_t, 2>();
  bool padded = false;
  for (int64_t b = 0; b < B; ++b) {
    const auto& r = *rows[static_cast<size_t>(b)];
    const int64_t P = static_cast<int64_t>(r.prompt.size());
    int64_t t = 0;
    for (int64_t id : r.prompt) {
      i_a[b][t] = id;
      p_a[b][t] = t;
      ++t;
    }
    const auto order = segment_order(which[static_cast<size_t>(b)], r.responses.size(), o.seed);
    int64_t s = 0;
    for (int k : order) {
      ++s;
      int64_t q = P;
      for (int64_t id : r.responses[static_cast<size_t>(k)]) {
        i_a[b][t] = id;
        p_a[b][t] = q++;
        s_a[b][t] = s;
        ++t;
      }
      l_a[b][k] = t - 1;
    }
    for (int64_t u = 0; u < t; ++u) m_a[b][u] = 1;
    mb->num_tokens += t;
    padded = padded || t < T;
    // Padding: a segment of its own with positions counting on, never read.
    for (int64_t q = P; t < T; ++t, ++q) {
      p_a[b][t] = q;
      s_a[b][t] = s + 1;
    }
  }
  mb->tensors["input_ids"] = ids;
  mb->tensors["position_ids"] = pos;
  mb->tensors["segment_ids"] = seg;
  if (padded) mb->tensors["attention_mask"] = mask;
  mb->tensors["reward_index"] = last;
}

}  // namespace

core::MicroBatch collate_rankings(const std::vector<RankedTokens>& rankings,
                                  const std::vector<int64_t>& which, const RowOptions& options) {
  std::vector<const RankedTokens*> rows;
  for (int64_t i : which) rows.push_back(&rankings.at(static_cast<size_t>(i)));
  core::MicroBatch mb;
  mb.num_rows = static_cast<int64_t>(rows.size());
  mb.rows_independent = true;  // every pair lies inside one ranking, one ranking per row
  if (options.layout == Layout::kSeparate) {
    collate_separate(rows, options.pad_id, &mb);
  } else {
    collate_one_row(rows, which, options, &mb);
  }
  add_pairs(rows, &mb);
  return mb;
}

RankingDataset::RankingDataset(std::shared_ptr<const std::vector<RankedTokens>> rankings,
                               RowOptions options)
    : rankings_(std::move(rankings)), options_(options) {}

const std::vector<int64_t>& RankingDataset::order(int64_t epoch) {
  for (const auto& [e, o] : cache_) {
    if (e == epoch) return o;
  }
  const int64_t n = static_cast<int64_t>(rankings_->size());
  std::vector<int64_t> o;
  if (options_.shuffle) {
    o = core::seeded_permutation(n, options_.seed * 6364136223846793005ULL + epoch + 1);
  } else {
    for (int64_t i = 0; i < n; ++i) o.push_back(i);
  }
  if (cache_.size() >= 2) cache_.erase(cache_.begin());
  cache_.emplace_back(epoch, std::move(o));
  return cache_.back().second;
}

int64_t RankingDataset::num_rows(int64_t epoch) {
  return static_cast<int64_t>(rankings_->size());
}

core::MicroBatch RankingDataset::collate(const std::vector<core::RowRef>& refs) {
  std::vector<int64_t> which;
  for (const auto& r : refs) which.push_back(order(r.epoch).at(static_cast<size_t>(r.row)));
  return collate_rankings(*rankings_, which, options_);
}

}  // namespace posttrain::reward
