// The ranking rule and the selection/pair decision on hand-built scores: every expectation is
// derived by hand from the rule "keys in order, higher first, ties to the earlier sample".
#include <gtest/gtest.h>

#include "common/error.h"
#include "rejection_sampling/record.h"

namespace posttrain::rejection_sampling {
namespace {

CandidateScores scores(std::optional<bool> verified, std::optional<double> reward,
                       double logprob = 0, int64_t tokens = 1) {
  CandidateScores s;
  s.verified = verified;
  s.reward = reward;
  s.logprob = logprob;
  s.tokens = tokens;
  return s;
}

TEST(Ranking, VerifiedFirstThenReward) {
  RankingRule rule;  // verified, reward
  // 0: unverified but the highest reward; 1 and 2 verified, 2 with the higher reward.
  std::vector<CandidateScores> c = {scores(false, 9.0), scores(true, 1.0), scores(true, 2.0),
                                    scores(false, -1.0)};
  EXPECT_EQ(rank_candidates(rule, c), (std::vector<size_t>{2, 1, 0, 3}));
  const auto bw = best_and_worst(rule, c);
  EXPECT_EQ(bw.best, 2u);
  EXPECT_EQ(bw.worst, 3u);
  EXPECT_TRUE(bw.strict);
}

TEST(Ranking, RewardFirstIgnoresVerdictUntilATie) {
  RankingRule rule;
  rule.keys = {RankKey::kReward, RankKey::kVerified};
  std::vector<CandidateScores> c = {scores(false, 9.0), scores(true, 1.0), scores(false, 1.0)};
  // 9.0 first; 1.0 and 1.0 tie on reward, the verified one (1) wins.
  EXPECT_EQ(rank_candidates(rule, c), (std::vector<size_t>{0, 1, 2}));
}

TEST(Ranking, TiesKeepSampleOrderAndMakeNoPair) {
  RankingRule rule;
  std::vector<CandidateScores> c = {scores(false, 0.5), scores(false, 0.5), scores(false, 0.5)};
  const auto bw = best_and_worst(rule, c);
  EXPECT_EQ(bw.best, 0u);
  EXPECT_EQ(bw.worst, 2u);
  EXPECT_FALSE(bw.strict);
}

TEST(Ranking, MissingValuesTie) {
  RankingRule rule;  // no verifier, no reward model: every candidate ties
  std::vector<CandidateScores> c = {scores(std::nullopt, std::nullopt, -3.0),
                                    scores(std::nullopt, std::nullopt, -1.0)};
  EXPECT_FALSE(best_and_worst(rule, c).strict);
  rule.keys = {RankKey::kVerified, RankKey::kLogprob};
  const auto bw = best_and_worst(rule, c);  // logprob -1 > -3
  EXPECT_EQ(bw.best, 1u);
  EXPECT_TRUE(bw.strict);
}

TEST(Ranking, ShorterPrefersFewerTokens) {
  RankingRule rule;
  rule.keys = {RankKey::kShorter};
  std::vector<CandidateScores> c = {scores(true, 0, 0, 7), scores(true, 0, 0, 3),
                                    scores(true, 0, 0, 5)};
  EXPECT_EQ(rank_candidates(rule, c), (std::vector<size_t>{1, 2, 0}));
}

TEST(Ranking, UnknownKeyIsAnError) {
  EXPECT_THROW(parse_rank_key("rewards"), UsageError);
  EXPECT_EQ(parse_rank_key("logprob"), RankKey::kLogprob);
}

Candidate candidate(const std::string& text, std::optional<bool> passed,
                    std::optional<double> reward) {
  Candidate c;
  c.text = text;
  c.tokens = static_cast<int64_t>(text.size());
  if (passed) c.verdict = Verdict{*passed, *passed ? "pass" : "fail", "", nullptr};
  c.reward = reward;
  return c;
}

TEST(Decide, BestIsSelectedAndPairedWithWorst) {
  SamplePrompt p;  // no kind: no verifier
  PromptOutcome o;
  o.prompt = &p;
  o.candidates = {candidate("a", std::nullopt, 0.1), candidate("b", std::nullopt, 0.7),
                  candidate("c", std::nullopt, -0.2)};
  RankingRule rule;
  const Decision d = decide(rule, o);
  ASSERT_TRUE(d.selected);
  EXPECT_EQ(*d.selected, 1u);
  ASSERT_TRUE(d.pair);
  EXPECT_EQ(d.pair->first, 1u);
  EXPECT_EQ(d.pair->second, 2u);
}

TEST(Decide, AllTiedSelectsTheFirstAndMakesNoPair) {
  SamplePrompt p;
  PromptOutcome o;
  o.prompt = &p;
  o.candidates = {candidate("a", std::nullopt, 0.3), candidate("b", std::nullopt, 0.3)};
  const Decision d = decide(RankingRule{}, o);
  ASSERT_TRUE(d.selected);
  EXPECT_EQ(*d.selected, 0u);
  EXPECT_FALSE(d.pair);
}

TEST(Decide, EmptyCandidatesAreNeverRanked) {
  SamplePrompt p;
  PromptOutcome o;
  o.prompt = &p;
  // The empty one has the best reward but cannot be stored.
  o.candidates = {candidate("", std::nullopt, 5.0), candidate("x", std::nullopt, 0.0),
                  candidate("y", std::nullopt, 1.0)};
  const Decision d = decide(RankingRule{}, o);
  EXPECT_EQ(d.order, (std::vector<size_t>{2, 1}));
  EXPECT_EQ(*d.selected, 2u);
  EXPECT_EQ(d.pair->second, 1u);
}

TEST(Decide, RequireVerifiedWithholdsAFailedBest) {
  SamplePrompt p;
  p.kind = "math";
  PromptOutcome o;
  o.prompt = &p;
  o.candidates = {candidate("a", false, 0.2), candidate("b", false, 0.9)};
  RankingRule rule;
  Decision d = decide(rule, o);
  EXPECT_FALSE(d.selected);  // nothing passed
  ASSERT_TRUE(d.pair);       // but the reward still orders them: b over a
  EXPECT_EQ(d.pair->first, 1u);
  rule.require_verified = false;
  d = decide(rule, o);
  EXPECT_EQ(*d.selected, 1u);
  // One passing candidate beats a higher reward.
  o.candidates[0].verdict->passed = true;
  rule.require_verified = true;
  d = decide(rule, o);
  EXPECT_EQ(*d.selected, 0u);
}

}  // namespace
}  // namespace posttrain::rejection_sampling
