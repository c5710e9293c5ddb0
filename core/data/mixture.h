// Builds the training and eval examples of a stage from several weighted sources, for any
// example type (SFT token examples, tokenised preference pairs, rankings): each source's
// examples are held to the length limit by the stage's limit function (truncated, dropped as
// too long, or dropped with nothing to train on), split into train and eval by a seeded draw,
// and the training part repeated/subsampled by its weight:
//   weight w = floor(w) full copies plus a seeded random fraction (w - floor(w)) of the examples,
// so weight 1 uses a source once per epoch, 0.5 half of it, 2 twice. An example stays whole (a
// pair is never split between train and eval). The counts of every step come back in
// SourceStats so the log can say what was cut.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/data/examples.h"

namespace posttrain::core {

enum class OverlongPolicy { kTruncate, kDrop };
OverlongPolicy parse_overlong_policy(const std::string& name);  // "truncate" | "drop"

struct SourceStats {
  std::string name;
  double weight = 1.0;
  int64_t read = 0;           // examples in the source (lines read, skipped ones included)
  int64_t skipped_not_kept = 0;  // SFT: synth lines whose checks failed ("kept": false)
  int64_t truncated = 0;      // longer than the limit, cut to it
  int64_t dropped_long = 0;   // longer than the limit, dropped (policy drop)
  int64_t dropped_no_targets = 0;  // nothing left to train on (e.g. after truncation)
  int64_t eval = 0;           // held out for eval
  int64_t train = 0;          // training examples after weighting
  nlohmann::json to_json() const;
};

// What a stage's limit function did to one example (kept unless too_long or no_targets).
struct LimitResult {
  bool truncated = false;   // cut to the limit
  bool too_long = false;    // dropped: over the limit under OverlongPolicy::kDrop
  bool no_targets = false;  // dropped: nothing (left) to train on
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

// One source's examples plus its name and weight.
template <class Example>
struct SourceOf {
  std::string name;
  double weight = 1.0;
  std::vector<Example> examples;
  bool eval_only = false;  // every example goes to eval (an explicit eval file)
};

template <class Example>
struct MixtureOf {
  std::vector<Example> train;
  std::vector<Example> eval;
  std::vector<SourceStats> sources;
};

// Which of a source's examples (by index) go to eval and to train (with repeats), given what the
// limit function did to each; fills the counts of `stats` (name and weight set by the caller).
// `source_index` seeds the draws, so each source's split is independent of the others'.
struct SourceSplit {
  std::vector<int64_t> eval, train;
};
SourceSplit split_source(const std::vector<LimitResult>& limits, double weight, bool eval_only,
                         size_t source_index, const MixtureOptions& options, SourceStats* stats);

// The mixture of `sources`; limit(&example) applies the length limit in place.
template <class Example>
MixtureOf<Example> build_mixture_of(std::vector<SourceOf<Example>> sources,
                                    const MixtureOptions& options,
                                    const std::function<LimitResult(Example*)>& limit) {
  MixtureOf<Example> mix;
  for (size_t s = 0; s < sources.size(); ++s) {
    SourceOf<Example>& src = sources[s];
    std::vector<LimitResult> limits;
    limits.reserve(src.examples.size());
    for (auto& ex : src.examples) limits.push_back(limit(&ex));
    SourceStats st;
    st.name = src.name;
    st.weight = src.weight;
    const SourceSplit split = split_source(limits, src.weight, src.eval_only, s, options, &st);
    for (int64_t i : split.eval) mix.eval.push_back(src.examples[i]);
    for (int64_t i : split.train) mix.train.push_back(src.examples[i]);
    mix.sources.push_back(std::move(st));
  }
  return mix;
}

// SFT's token examples: the limit is apply_length_limit, and an example without targets left
// is dropped.
using TokenizedSource = SourceOf<TokenizedExample>;
using Mixture = MixtureOf<TokenizedExample>;
Mixture build_mixture(std::vector<TokenizedSource> sources, const MixtureOptions& options);

// A seeded Fisher-Yates permutation of 0..n-1 (the same on every platform).
std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed);

}  // namespace posttrain::core
