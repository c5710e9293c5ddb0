// The reward stage's data: rankings of 2-3 responses to one prompt (best first), from JSONL
// (TRL prompt/chosen/rejected, `ranking` rows; read by core/data/preference.h) or from store
// rounds (datastore PairFilter), filtered (strength, near-duplicate responses), tokenised into
// one shared prompt plus each response's own tokens, and held to the length limit. Every drop is
// counted per source for the first output line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "core/data/mixture.h"
#include "core/data/near_duplicate.h"
#include "core/data/preference.h"
#include "core/tokenizer/tokenizer.h"
#include "datastore/store.h"

namespace posttrain::reward {

// A prompt and its responses, best first: [edited,] chosen, rejected (or a ranking's order),
// plus the ordered pairs (better, worse) of response indices that train; empty = every i < j.
struct Ranking {
  core::PreferenceExample example;
  std::vector<std::pair<int, int>> pairs;
};

// The store's label of a core example's strength (the same four names).
std::optional<datastore::Strength> store_strength(
    const std::optional<core::PreferenceStrength>& s);

// One ordered pair of response slots and its strength margin (datastore/strength.h).
struct RankPair {
  int better = 0;
  int worse = 0;
  float margin = 0;
};

// A tokenised ranking: response k's sequence is prompt + responses[k] (each response at least
// one token), its reward read at its last token.
struct RankedTokens {
  std::vector<int64_t> prompt;
  std::vector<std::vector<int64_t>> responses;
  std::vector<RankPair> pairs;
  int64_t sequence_length(size_t k) const {
    return static_cast<int64_t>(prompt.size() + responses[k].size());
  }
};

struct SourceCounts {
  std::string name;
  double weight = 1.0;
  int64_t read = 0;            // rankings read
  int64_t filtered_strength = 0;  // below data.min_strength (JSONL rows; the store filters in SQL)
  int64_t near_duplicate_pairs = 0;  // pairs dropped: responses identical or nearly so
  int64_t dropped_no_pairs = 0;   // rankings left without a pair
  int64_t truncated = 0;
  int64_t dropped_long = 0;
  int64_t eval = 0;
  int64_t train = 0;     // rankings after weighting
  int64_t train_pairs = 0;
  nlohmann::json to_json() const;
};

struct TokenizeOptions {
  core::ChatFormat format = core::ChatFormat::kLlama3;
  int64_t max_seq_len = 2048;  // per prompt + response sequence
  core::OverlongPolicy overlong = core::OverlongPolicy::kTruncate;
};

// Keeps the pairs whose responses are not near duplicates (counted in *dropped). Returns the
// kept (better, worse) pairs.
std::vector<std::pair<int, int>> distinct_pairs(const Ranking& r,
                                                const core::NearDuplicateOptions& rule,
                                                int64_t* dropped);

// Tokenises a ranking restricted to `pairs`: each response's full sequence as the chat template
// renders prompt + response (text examples: prompt text, response text, EOS, as SFT does), split at their longest common prefix (so the one-row
// layout shares exactly the tokens every separate row starts with). std::nullopt when the
// length policy drops it (*dropped_long) or truncation leaves two responses identical.
std::optional<RankedTokens> tokenize_ranking(const core::Tokenizer& tok, const Ranking& r,
                                             const std::vector<std::pair<int, int>>& pairs,
                                             const TokenizeOptions& options, bool* truncated);

// Store rounds (empty = all) as rankings: each stored pair is [edited,] chosen, rejected, and an
// ordered pair of responses already given by an earlier stored pair is not repeated (a ranking
// of three imported as three pairs trains each of its pairs once). Pairs below min_strength are
// filtered by the store (PairFilter). `read` has the forms of core's JSONL reader.
std::vector<Ranking> read_store_rankings(const std::string& path, const std::vector<int>& rounds,
                                         std::optional<datastore::Strength> min_strength,
                                         const core::PreferenceReadOptions& read);

// Whether a label passes the store's PairFilter rule: unlabelled, or at least min_strength.
bool passes_strength(const std::optional<datastore::Strength>& s,
                     const std::optional<datastore::Strength>& min_strength);

}  // namespace posttrain::reward
