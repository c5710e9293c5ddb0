// Builds the training and eval examples of a stage from several weighted sources: each source is
// tokenised, held to the length limit (truncated or dropped, as configured), split into train and
// eval by a seeded draw, and its training part repeated/subsampled by its weight:
//   weight w = floor(w) full copies plus a seeded random fraction (w - floor(w)) of the examples,
// so weight 1 uses a source once per epoch, 0.5 half of it, 2 twice. The counts of every step
// come back in MixtureStats so the log can say what was cut.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/data/examples.h"

namespace posttrain::core {

enum class OverlongPolicy { kTruncate, kDrop };
OverlongPolicy parse_overlong_policy(const std::string& name);  // "truncate" | "drop"

struct SourceStats {
  std::string name;
  double weight = 1.0;
  int64_t read = 0;           // examples in the source
  int64_t truncated = 0;      // longer than the limit, cut to it
  int64_t dropped_long = 0;   // longer than the limit, dropped (policy drop)
  int64_t dropped_no_targets = 0;  // nothing left to train on (e.g. after truncation)
  int64_t eval = 0;           // held out for eval
  int64_t train = 0;          // training examples after weighting
  nlohmann::json to_json() const;
};

// Cuts `ex` to `max_len` tokens (kTruncate) or reports it too long (kDrop). Returns false when
// the example must be dropped; *truncated tells whether it was cut.
bool apply_length_limit(TokenizedExample* ex, int64_t max_len, OverlongPolicy policy,
                        bool* truncated);

struct MixtureOptions {
  int64_t max_seq_len = 2048;
  OverlongPolicy overlong = OverlongPolicy::kTruncate;
  double eval_fraction = 0.0;  // of each source, held out before weighting
  uint64_t seed = 0;
};

struct Mixture {
  std::vector<TokenizedExample> train;
  std::vector<TokenizedExample> eval;
  std::vector<SourceStats> sources;
};

// One source's tokenised examples plus its name and weight.
struct TokenizedSource {
  std::string name;
  double weight = 1.0;
  std::vector<TokenizedExample> examples;
  bool eval_only = false;  // every example goes to eval (an explicit eval file)
};

Mixture build_mixture(std::vector<TokenizedSource> sources, const MixtureOptions& options);

// A seeded Fisher-Yates permutation of 0..n-1 (the same on every platform).
std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed);

}  // namespace posttrain::core
