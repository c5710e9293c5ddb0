// The rejection-sampling stage (`posttrain sample`): K candidates per prompt from the policy
// through core's decode engine, each scored by the prompt kind's verifier and/or a reward
// model, ranked by the config's explicit rule; the best becomes the round's SFT sample and
// best-vs-worst a preference pair (source "rejection_sampling"). Everything is recorded in the
// store, one transaction per prompt, committed in prompt order; a rerun skips the prompts
// already committed, so a killed run resumed ends with the store an uninterrupted run writes.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "rejection_sampling/config.h"

namespace posttrain::rejection_sampling {

struct SampleSummary {
  int64_t prompts_total = 0;  // prompts in the source (after limit)
  int64_t duplicates = 0;     // repeated prompts left out
  int64_t skipped = 0;        // already done by an earlier run
  int64_t prompts = 0;        // sampled by this run
  int64_t samples = 0;        // candidates generated
  int64_t empty = 0;          // empty candidates (not stored, never selected)
  int64_t verifiable = 0;     // candidates of prompts with a verifier
  int64_t verified = 0;       // of those, passed
  int64_t prompts_verifiable = 0;
  int64_t best_verified = 0;  // prompts whose best candidate passed
  int64_t selected = 0;       // SFT selections made
  int64_t pairs = 0;          // preference pairs made
  int64_t rewarded = 0;       // candidates scored by the reward model
  double reward_sum = 0;
  int64_t generated_tokens = 0;
  double seconds = 0;  // generation + scoring + writing
  nlohmann::json to_json() const;
};

// Reads and checks every prompt before generating; writes the store, OUT/candidates.jsonl
// (one line per candidate, every run's lines for prompts that are done) and OUT/summary.json.
SampleSummary run_sample(const SampleOptions& options);

}  // namespace posttrain::rejection_sampling
