// Micro-batches of rankings for the reward model, one trainer row per ranking, in either layout:
//
// separate  every response its own sequence prompt + response: tensors
//             input_ids, attention_mask [B, K, T] (K = most responses in the batch, right
//             padding; an unused slot is one masked-in pad token no pair reads),
//             reward_index [B, K] = each sequence's last token.
// one_row   Llama 3's layout: the prompt once, then the responses in a seeded shuffled order,
//             each attending to the prompt and to itself only (core's shared-prefix rows):
//             input_ids, position_ids, segment_ids, attention_mask [B, T] (segment 0 = prompt,
//             s >= 1 = response slot order after shuffling, positions continue from the prompt
//             in every segment), reward_index [B, K] = the position in the row of response k's
//             last token (k in ranking order, whatever the shuffle).
// Both: pair_better, pair_worse [B, P] int64 response slots, pair_margin, pair_mask [B, P]
// float32; num_terms = real pairs. Every tensor has the rows as dim 0, so the trainer may split
// a micro-batch by rows.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/train/batch.h"
#include "reward/data.h"

namespace posttrain::reward {

enum class Layout { kSeparate, kOneRow };
Layout parse_layout(const std::string& name);  // "separate" | "one_row"

struct RowOptions {
  Layout layout = Layout::kSeparate;
  bool shuffle = true;  // ranking order per epoch (false: as given, for eval)
  uint64_t seed = 0;    // epoch order and the one-row response order
  int64_t pad_id = 0;
};

// The ranking rows of `rankings` (by index) as one micro-batch.
core::MicroBatch collate_rankings(const std::vector<RankedTokens>& rankings,
                                  const std::vector<int64_t>& which, const RowOptions& options);

// The order of ranking `index`'s responses in its one-row layout (a seeded permutation).
std::vector<int> segment_order(int64_t index, size_t responses, uint64_t seed);

class RankingDataset : public core::RowDataset {
 public:
  RankingDataset(std::shared_ptr<const std::vector<RankedTokens>> rankings, RowOptions options);
  int64_t num_rows(int64_t epoch) override;
  core::MicroBatch collate(const std::vector<core::RowRef>& rows) override;

 private:
  const std::vector<int64_t>& order(int64_t epoch);
  std::shared_ptr<const std::vector<RankedTokens>> rankings_;
  RowOptions options_;
  std::vector<std::pair<int64_t, std::vector<int64_t>>> cache_;  // two most recent epochs
};

}  // namespace posttrain::reward
