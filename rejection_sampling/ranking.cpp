// The explicit ranking rule (see ranking.h).
#include "rejection_sampling/ranking.h"

#include <algorithm>
#include <numeric>

#include "common/error.h"

namespace posttrain::rejection_sampling {

RankKey parse_rank_key(const std::string& name) {
  if (name == "verified") return RankKey::kVerified;
  if (name == "reward") return RankKey::kReward;
  if (name == "logprob") return RankKey::kLogprob;
  if (name == "shorter") return RankKey::kShorter;
  throw UsageError("unknown ranking key '" + name + "' (verified, reward, logprob, shorter)");
}

const char* rank_key_name(RankKey key) {
  switch (key) {
    case RankKey::kVerified:
      return "verified";
    case RankKey::kReward:
      return "reward";
    case RankKey::kLogprob:
      return "logprob";
    case RankKey::kShorter:
      return "shorter";
  }
  return "?";
}

namespace {

// A missing value on either side is a tie: the key says nothing about this pair.
template <typename T>
int compare_values(const std::optional<T>& a, const std::optional<T>& b) {
  if (!a || !b) return 0;
  return *a > *b ? 1 : (*a < *b ? -1 : 0);
}

}  // namespace

int compare_candidates(const RankingRule& rule, const CandidateScores& a,
                       const CandidateScores& b) {
  for (RankKey key : rule.keys) {
    int c = 0;
    switch (key) {
      case RankKey::kVerified:
        c = compare_values(a.verified, b.verified);
        break;
      case RankKey::kReward:
        c = compare_values(a.reward, b.reward);
        break;
      case RankKey::kLogprob:
        c = compare_values(std::optional<double>(a.logprob), std::optional<double>(b.logprob));
        break;
      case RankKey::kShorter:
        c = compare_values(std::optional<int64_t>(b.tokens), std::optional<int64_t>(a.tokens));
        break;
    }
    if (c != 0) return c;
  }
  return 0;
}

std::vector<size_t> rank_candidates(const RankingRule& rule,
                                    const std::vector<CandidateScores>& candidates) {
  std::vector<size_t> order(candidates.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    return compare_candidates(rule, candidates[x], candidates[y]) > 0;
  });
  return order;
}

BestWorst best_and_worst(const RankingRule& rule, const std::vector<CandidateScores>& candidates) {
  if (candidates.empty()) throw UsageError("best_and_worst: no candidates");
  const auto order = rank_candidates(rule, candidates);
  BestWorst bw;
  bw.best = order.front();
  bw.worst = order.back();
  bw.strict = compare_candidates(rule, candidates[bw.best], candidates[bw.worst]) > 0;
  return bw;
}

}  // namespace posttrain::rejection_sampling
