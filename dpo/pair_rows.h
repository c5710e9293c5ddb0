// Pairs as training rows: each pair is one shared-prefix document (core/data/shared_prefix.h):
// the prompt once, then [last prompt token, chosen] and [last prompt token, rejected], each
// response attending to the prompt and itself only, so both log-prob sums come from one pass
// that equals two separate rows. Documents pack greedily into rows like SFT rows.
//
// MicroBatch tensors (B rows, T tokens, K = the most pairs in one row), all per row so the
// trainer may split a micro-batch by rows:
//   input_ids, position_ids, document_ids, segment_ids, targets [B, T] (attention_mask when
//     padded): the model's inputs; targets = tokens under either mask below
//   dpo_slot   [B, T] int64: 2 k + side (side 0 chosen, 1 rejected) of the k-th pair of the
//              row when the token's target counts in the DPO sums, else -1
//   nll_mask   [B, T] float: 1 where the target is a chosen NLL (rpo) target
//   ref_logps  [B, K, 2] float: the reference's sums (chosen, rejected) of each pair
//   pair_counts [B, K, 2] float: tokens counted in each sum (ipo's means)
//   pair_valid [B, K] bool: whether slot k of the row holds a pair
// num_terms = pairs; counts = {"target_tokens": NLL targets, "chosen_tokens", "rejected_tokens"}.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/data/shared_prefix.h"
#include "core/train/batch.h"
#include "dpo/pair_tokens.h"
#include "dpo/ref_cache.h"

namespace posttrain::dpo {

// The shared-prefix document of a pair (targets under either mask).
core::SharedPrefixDocument pair_document(const TokenizedPair& pair);

// Collates rows of pairs (indices into `pairs`) into one micro-batch. `refs` gives each pair's
// reference values (same indexing as pairs), or is null (scoring without a reference: ref_logps
// and pair_counts are zeros / the pairs' counts).
core::MicroBatch collate_pair_rows(const std::vector<TokenizedPair>& pairs,
                                   const std::vector<core::SharedPrefixDocument>& documents,
                                   const std::vector<RefValues>* refs,
                                   const std::vector<std::vector<int64_t>>& rows, int64_t pad_id);

struct PairRowOptions {
  int64_t max_row_tokens = 2048;  // packed row limit
  bool packing = true;
  bool shuffle = true;  // false: file order (eval)
  uint64_t seed = 0;
  int64_t pad_id = 0;
};

class PairRowDataset : public core::RowDataset {
 public:
  // refs: one entry per pair.
  PairRowDataset(std::shared_ptr<const std::vector<TokenizedPair>> pairs,
                 std::shared_ptr<const std::vector<RefValues>> refs, PairRowOptions options);
  int64_t num_rows(int64_t epoch) override;
  core::MicroBatch collate(const std::vector<core::RowRef>& rows) override;
  int64_t num_pairs() const { return static_cast<int64_t>(pairs_->size()); }

 private:
  const std::vector<std::vector<int64_t>>& layout(int64_t epoch);

  std::shared_ptr<const std::vector<TokenizedPair>> pairs_;
  std::shared_ptr<const std::vector<RefValues>> refs_;
  std::vector<core::SharedPrefixDocument> documents_;
  PairRowOptions options_;
  std::vector<std::pair<int64_t, std::vector<std::vector<int64_t>>>> cache_;
};

}  // namespace posttrain::dpo
