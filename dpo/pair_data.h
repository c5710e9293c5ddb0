// The DPO stage's data: pairs read from JSONL sources (TRL's forms through core's preference
// reader, plus pre-tokenized rows) and from store rounds, tokenised with masks, held to the
// length limits, split into train / held-out by a seeded draw and weighted like SFT sources.
// A ranking row (or an edited pair) of K > 2 responses gives the K - 1 pairs (best, other).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/data/near_duplicate.h"
#include "core/tokenizer/tokenizer.h"
#include "dpo/options.h"
#include "dpo/pair_tokens.h"

namespace posttrain::dpo {

// How pairs are tokenised (everything the reference's cache key depends on, but the reference).
struct PairTokenization {
  // Null when the model has no tokenizer: only pre-tokenized rows can be read then.
  const core::Tokenizer* tok = nullptr;
  core::ChatFormat format = core::ChatFormat::kLlama3;
  MaskOptions masks;
  bool strings_as_text = false;  // all-string rows: raw text (TRL) rather than chat turns
  int64_t vocab_size = 0;        // the model's (pre-tokenized ids are checked against it)
};

// One JSONL row: pre-tokenized (prompt_input_ids, chosen_input_ids, rejected_input_ids) or any
// form core::parse_preference_example reads. Appends its pairs to *out.
void parse_pair_row(const nlohmann::json& row, const Location& where,
                    const PairTokenization& how, std::vector<TokenizedPair>* out);
std::vector<TokenizedPair> read_pair_file(const std::string& path, const PairTokenization& how);

struct StorePairOptions {
  std::vector<int> rounds;                 // empty = the latest round with pairs
  std::string min_strength = "better";     // or "none"
  core::NearDuplicateOptions near_duplicates;
};
// Store pairs, each carrying its preference_pairs id; *near_duplicates counts those dropped.
// Errors name the store and the pair row ("STORE: field 'pair 12, chosen'").
std::vector<TokenizedPair> read_store_pairs(const std::string& store, const StorePairOptions& o,
                                            const PairTokenization& how,
                                            int64_t* near_duplicates, std::vector<int>* rounds);

struct PairSourceStats {
  std::string name;
  double weight = 1.0;
  int64_t read = 0;
  int64_t near_duplicates = 0;  // dropped (store pairs)
  int64_t truncated = 0;
  int64_t dropped_long = 0;     // overlong under data.overlong drop, or nothing left to score
  int64_t eval = 0;
  int64_t train = 0;
  nlohmann::json to_json() const;
};

struct PairSource {
  std::string name;
  double weight = 1.0;
  std::vector<TokenizedPair> pairs;
  bool eval_only = false;
  int64_t near_duplicates = 0;
};

struct PairMixture {
  std::vector<TokenizedPair> train, eval;
  std::vector<PairSourceStats> sources;
};

// Truncation, the held-out split (eval_fraction of each source, at least one when > 0) and
// weights (floor(w) copies plus a seeded fraction), as core/data/mixture.h does for SFT.
PairMixture mix_pairs(std::vector<PairSource> sources, const TruncationOptions& truncation,
                      double eval_fraction, uint64_t seed);

}  // namespace posttrain::dpo
