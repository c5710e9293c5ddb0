// Exact and near-duplicate filters, and the self-correction loop.
#include "synthetic/filters.h"

#include <gtest/gtest.h>

#include "synthetic/self_correct.h"

namespace posttrain::synthetic {
namespace {

TEST(ExactDedup, IgnoresCaseAndWhitespaceOnly) {
  ExactDedup d;
  EXPECT_TRUE(d.add("Compute 2 + 2."));
  EXPECT_FALSE(d.add("  compute   2 +\n2. "));
  EXPECT_TRUE(d.add("Compute 2 + 3."));
}

TEST(MinHash, SimilarityTracksJaccard) {
  MinHash h(128, 5);
  std::string a = "The quick brown fox jumps over the lazy dog near the river bank today.";
  std::string b = "The quick brown fox jumps over the lazy dog near the river bank today!";
  std::string c = "Completely different words about compilers, registers and caches here.";
  EXPECT_DOUBLE_EQ(MinHash::similarity(h.signature(a), h.signature(a)), 1.0);
  EXPECT_GT(MinHash::similarity(h.signature(a), h.signature(b)), 0.8);
  EXPECT_LT(MinHash::similarity(h.signature(a), h.signature(c)), 0.2);
}

TEST(MinHash, WordShinglesEstimateJaccard) {
  // 10 words -> 8 word 3-grams each; sharing the first 6 of 8 grams: Jaccard 6/10 = 0.6.
  MinHash h(256, 3, /*words=*/true);
  std::string a = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10";
  std::string b = "w1 w2 w3 w4 w5 w6 w7 w8 x9 x10";
  double s = MinHash::similarity(h.signature(a), h.signature(b));
  EXPECT_NEAR(s, 0.6, 0.1);
}

TEST(NearDupIndex, DropsNearCopiesKeepsDistinctTexts) {
  NearDupIndex index(MinHash(64, 5), 0.8);
  std::string base =
      "def rotate_right(xs):\n    k = 3 % len(xs) if xs else 0\n    return xs[-k:] + xs[:-k]\n";
  EXPECT_TRUE(index.add(base));
  double sim = 0;
  EXPECT_FALSE(index.add(base + "\n", &sim));  // same after normalisation
  EXPECT_FALSE(
      index.add("def rotate_right(xs):\n    k = 3 % len(xs) if xs else 0\n    return xs[-k:] + "
                "xs[:-k]  # done\n",
                &sim));
  EXPECT_GE(sim, 0.8);
  EXPECT_TRUE(
      index.add("def dedupe(xs):\n    seen = set()\n    out = []\n    for x in xs:\n"
                "        if x not in seen:\n            seen.add(x)\n            out.append(x)\n"
                "    return out\n"));
}

TEST(LengthLimits, Bounds) {
  LengthLimits l{3, 5};
  EXPECT_FALSE(l.ok("ab"));
  EXPECT_TRUE(l.ok("abc"));
  EXPECT_TRUE(l.ok("abcde"));
  EXPECT_FALSE(l.ok("abcdef"));
}

AttemptChecker equals(const std::string& want) {
  return [want](const nlohmann::json& attempt) {
    AttemptOutcome o;
    o.passed = attempt.get<std::string>() == want;
    o.verdict = o.passed ? "pass" : "fail";
    o.feedback = o.passed ? "" : "expected something else than " + attempt.get<std::string>();
    return o;
  };
}

TEST(SelfCorrect, FixedByFeedbackKeepsDialogueWithZeroWeightOnFailures) {
  nlohmann::json head = {{{"role", "user"}, {"content", "say ok"}}};
  Correction c = self_correct(head, {"no", "nope", "ok", "extra"}, 3, equals("ok"));
  EXPECT_TRUE(c.kept);
  EXPECT_FALSE(c.first_try);
  EXPECT_TRUE(c.fixed_by_feedback);
  ASSERT_EQ(c.attempts.size(), 3u);
  // user, assistant(no,0), user(feedback), assistant(nope,0), user(feedback), assistant(ok,1)
  ASSERT_EQ(c.messages.size(), 6u);
  EXPECT_EQ(c.messages[1]["content"], "no");
  EXPECT_EQ(c.messages[1]["weight"], 0);
  EXPECT_EQ(c.messages[2]["role"], "user");
  EXPECT_NE(c.messages[2]["content"].get<std::string>().find("than no"), std::string::npos);
  EXPECT_EQ(c.messages[3]["weight"], 0);
  EXPECT_EQ(c.messages[5]["content"], "ok");
  EXPECT_EQ(c.messages[5]["weight"], 1);
}

TEST(SelfCorrect, NotKeptWhenAttemptsRunOutAndStatsCount) {
  nlohmann::json head = {{{"role", "user"}, {"content", "say ok"}}};
  Correction fail = self_correct(head, {"a", "b", "ok"}, 2, equals("ok"));
  EXPECT_FALSE(fail.kept);
  EXPECT_EQ(fail.attempts.size(), 2u);
  Correction first = self_correct(head, {"ok"}, 2, equals("ok"));
  EXPECT_TRUE(first.first_try);
  EXPECT_EQ(first.messages.back()["weight"], 1);
  Correction fixed = self_correct(head, {"x", "ok"}, 2, equals("ok"));
  CorrectionStats stats;
  for (const auto* c : {&fail, &first, &fixed, &first}) stats.add(*c);
  auto j = stats.to_json();
  EXPECT_EQ(j["problems_with_candidates"], 4);
  EXPECT_EQ(j["correct_first_try"], 2);
  EXPECT_EQ(j["fixed_by_feedback"], 1);
  EXPECT_EQ(j["never_correct"], 1);
  EXPECT_DOUBLE_EQ(j["share_correct_first_try"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["share_fixed_by_feedback"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(j["share_of_wrong_first_fixed"].get<double>(), 0.5);
}

}  // namespace
}  // namespace posttrain::synthetic
