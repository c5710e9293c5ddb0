// The ranking rule of rejection sampling, explicit in the config: a list of keys compared in
// order, each "higher is better", the first difference deciding. Keys:
//   verified  1 when the prompt's verifier passed the candidate, else 0
//   reward    the reward model's score
//   logprob   the policy's own summed log-prob of the sample
//   shorter   minus the sample's token count (prefers the shorter of otherwise equal ones)
// A key a candidate has no value for (no verifier for the prompt, no reward model) counts as
// equal across the prompt's candidates. Remaining ties go to the earlier sample, so the
// order is deterministic.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace posttrain::rejection_sampling {

enum class RankKey { kVerified, kReward, kLogprob, kShorter };
// Throws UsageError for anything but the four names.
RankKey parse_rank_key(const std::string& name);
const char* rank_key_name(RankKey key);

struct RankingRule {
  std::vector<RankKey> keys = {RankKey::kVerified, RankKey::kReward};
  // With a verifier for the prompt, select the best candidate as SFT data only when it passed.
  bool require_verified = true;
};

// What the rule looks at for one candidate.
struct CandidateScores {
  std::optional<bool> verified;
  std::optional<double> reward;
  double logprob = 0;
  int64_t tokens = 0;
};

// -1, 0 or 1: a ranks below, level with or above b under the rule (sample order not counted).
int compare_candidates(const RankingRule& rule, const CandidateScores& a, const CandidateScores& b);

// Candidate indices best first (stable: ties keep sample order).
std::vector<size_t> rank_candidates(const RankingRule& rule,
                                    const std::vector<CandidateScores>& candidates);

struct BestWorst {
  size_t best = 0;
  size_t worst = 0;
  bool strict = false;  // best ranks strictly above worst (a preference pair makes sense)
};
// Best and worst of a non-empty list (worst: the last in rank order).
BestWorst best_and_worst(const RankingRule& rule, const std::vector<CandidateScores>& candidates);

}  // namespace posttrain::rejection_sampling
