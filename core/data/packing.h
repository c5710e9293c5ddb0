// Rows of token examples for training: one example per row, or (packing) many examples per row
// of at most max_seq_len tokens, laid out greedily in a seeded per-epoch order. A packed row
// carries position ids that restart at 0 for each document and a document id per token, so the
// model confines attention to each document and computes what each example would alone.
// Collation pads a micro-batch to its longest row (pad tokens: target kIgnoreTarget, attention
// masked).
//
// MicroBatch tensors ([B, T]): "input_ids", "targets" (kIgnoreTarget = no loss),
// "attention_mask" (only when some row is padded), and when packing "position_ids" and
// "document_ids" (padding gets a document of its own). Rows are independent (each example lies
// in one row) and num_terms counts target tokens.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/data/examples.h"
#include "core/train/batch.h"

namespace posttrain::core {

struct PackingOptions {
  int64_t max_seq_len = 2048;
  bool packing = true;
  bool shuffle = true;   // false: file order (eval)
  uint64_t seed = 0;
  int64_t pad_id = 0;
};

// Greedy packing of examples (by index, in `order`) into rows of at most max_len tokens; an
// example never spans two rows. Returns the example indices of each row.
std::vector<std::vector<int64_t>> pack_rows(const std::vector<TokenizedExample>& examples,
                                            const std::vector<int64_t>& order, int64_t max_len);
// The same for any example type, given each example's length in tokens (a pair or ranking laid
// out as one shared-prefix unit packs whole, never across two rows).
std::vector<std::vector<int64_t>> pack_lengths(const std::vector<int64_t>& lengths,
                                               const std::vector<int64_t>& order,
                                               int64_t max_len);

// Collates rows of examples into one micro-batch (see the file comment).
MicroBatch collate_rows(const std::vector<TokenizedExample>& examples,
                        const std::vector<std::vector<int64_t>>& rows, bool packed, int64_t pad_id);

class TokenRowDataset : public RowDataset {
 public:
  TokenRowDataset(std::shared_ptr<const std::vector<TokenizedExample>> examples,
                  PackingOptions options);
  int64_t num_rows(int64_t epoch) override;
  MicroBatch collate(const std::vector<RowRef>& rows) override;
  int64_t num_examples() const { return static_cast<int64_t>(examples_->size()); }

 private:
  const std::vector<std::vector<int64_t>>& layout(int64_t epoch);

  std::shared_ptr<const std::vector<TokenizedExample>> examples_;
  PackingOptions options_;
  // The two most recent epochs' layouts (a step may straddle an epoch boundary).
  std::vector<std::pair<int64_t, std::vector<std::vector<int64_t>>>> cache_;
};

}  // namespace posttrain::core
