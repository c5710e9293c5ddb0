// One prompt's outcome (its K candidates with their verdicts and rewards), the decision the
// ranking rule makes on it, and writing both to the store in one transaction: prompt,
// responses (policy checkpoint, round, token count, sampling settings with the sample's seed,
// system prompt), scores, the SFT selection, the best-vs-worst preference pair, and the
// prompt's done-marker that a resumed run skips on.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "datastore/store.h"
#include "rejection_sampling/prompts.h"
#include "rejection_sampling/ranking.h"
#include "rejection_sampling/verifiers.h"

namespace posttrain::rejection_sampling {

struct Candidate {
  int64_t sample = 0;  // k, 0-based
  uint64_t seed = 0;
  std::string text;  // decoded, valid UTF-8, cut at the stop string, without the stop token
  int64_t tokens = 0;
  std::string finish_reason;  // stop | length
  std::string stop;           // the stop string that ended it, if any
  double logprob = 0;
  std::optional<Verdict> verdict;
  std::optional<double> reward;
};

struct PromptOutcome {
  const SamplePrompt* prompt = nullptr;
  int64_t position = 0;  // index in the whole prompt list (seeds derive from it)
  std::string system_prompt;
  int64_t prompt_tokens = 0;
  std::vector<Candidate> candidates;  // in sample order
};

struct Decision {
  std::vector<size_t> order;       // ranked candidates, best first (empty texts left out)
  std::optional<size_t> selected;  // candidate that becomes SFT data
  std::optional<std::pair<size_t, size_t>> pair;  // (chosen, rejected)
};

// Ranks the non-empty candidates. The best is selected unless the rule requires a verified
// best and the prompt's verifier failed it; a pair exists when best ranks strictly above worst.
Decision decide(const RankingRule& rule, const PromptOutcome& outcome);

struct RecordContext {
  int round = 0;
  int64_t checkpoint_id = 0;  // the policy's checkpoints.id
  int64_t run_id = 0;         // runs.id holding the done-markers
  nlohmann::json sampling;    // the run's settings (each response adds its seed and sample)
  std::string reward_scorer;  // "" = no reward model
};

struct Recorded {
  int64_t prompt_id = 0;
  std::vector<int64_t> response_ids;  // per candidate; 0 for an empty text (not stored)
  std::optional<int64_t> pair_id;
};

// The done-marker's stage name in run_stages.
std::string done_marker(int64_t prompt_id);

// Writes one prompt in one transaction (all or nothing). `before_commit` runs inside it, after
// every row is written (the runner appends the candidates' lines there, so a prompt committed
// always has its lines written, and lines of an uncommitted one are trimmed on resume).
Recorded record_prompt(datastore::Store& store, const RecordContext& ctx,
                       const PromptOutcome& outcome, const Decision& decision,
                       const std::function<void(const Recorded&)>& before_commit = {});

}  // namespace posttrain::rejection_sampling
