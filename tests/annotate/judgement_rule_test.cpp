// The judgement -> pair rule, case by case (see annotate/judgement_rule.h for the rule).
#include "annotate/judgement_rule.h"

#include <gtest/gtest.h>

namespace posttrain::annotate {
namespace {

using Kind = PairDecision::Kind;
constexpr Choice A = Choice::kA, B = Choice::kB;
constexpr Strength kSig = Strength::kSignificantlyBetter, kBet = Strength::kBetter,
                   kSli = Strength::kSlightlyBetter, kMar = Strength::kMarginallyBetter;

Vote vote(Choice c, Strength s, const char* who, std::optional<int64_t> edit = std::nullopt) {
  return Vote{c, s, edit, who};
}

TEST(JudgementRule, OneJudgementIsThePair) {
  PairDecision d = decide_pair({vote(B, kSli, "ann", 7)}, 1);
  EXPECT_EQ(d.kind, Kind::kPair);
  EXPECT_EQ(d.choice, B);
  EXPECT_EQ(d.strength, kSli);
  EXPECT_EQ(d.edited_id, 7);
  EXPECT_EQ(d.annotators, std::vector<std::string>{"ann"});
}

TEST(JudgementRule, AgreementWaitsForTheSecondJudgement) {
  EXPECT_EQ(decide_pair({}, 1).kind, Kind::kWait);
  EXPECT_EQ(decide_pair({vote(A, kSig, "x")}, 2).kind, Kind::kWait);
  EXPECT_EQ(decide_pair({vote(A, kSig, "x"), vote(B, kSig, "y")}, 3).kind, Kind::kWait);
}

TEST(JudgementRule, TwoThatAgreeGiveOnePairWithTheWeakerStrength) {
  // significantly (3) and slightly (1): the weaker is slightly, whichever came first.
  for (auto [first, second] : {std::pair{kSig, kSli}, std::pair{kSli, kSig}}) {
    PairDecision d = decide_pair({vote(A, first, "x"), vote(A, second, "y", 42)}, 2);
    EXPECT_EQ(d.kind, Kind::kPair);
    EXPECT_EQ(d.choice, A);
    EXPECT_EQ(d.strength, kSli);
    EXPECT_EQ(d.edited_id, 42);  // the only edit
    EXPECT_EQ(d.annotators, (std::vector<std::string>{"x", "y"}));
  }
  // Both edited: the earlier edit is kept.
  EXPECT_EQ(decide_pair({vote(B, kBet, "x", 5), vote(B, kMar, "y", 6)}, 2).edited_id, 5);
  EXPECT_EQ(decide_pair({vote(B, kBet, "x", 5), vote(B, kMar, "y", 6)}, 2).strength, kMar);
}

TEST(JudgementRule, TwoThatDisagreeAskForAThird) {
  PairDecision d = decide_pair({vote(A, kSig, "x", 9), vote(B, kSig, "y")}, 2);
  EXPECT_EQ(d.kind, Kind::kNeedThird);
  EXPECT_TRUE(d.annotators.empty());
}

TEST(JudgementRule, TheThirdJudgementDecidesByMajority) {
  // x: A, y: B, z: B -> B with the weaker of y's and z's strengths; x's edit (of A) is not used.
  PairDecision d =
      decide_pair({vote(A, kSig, "x", 9), vote(B, kBet, "y"), vote(B, kSig, "z", 11)}, 3);
  EXPECT_EQ(d.kind, Kind::kPair);
  EXPECT_EQ(d.choice, B);
  EXPECT_EQ(d.strength, kBet);
  EXPECT_EQ(d.edited_id, 11);
  EXPECT_EQ(d.annotators, (std::vector<std::string>{"y", "z"}));
  d = decide_pair({vote(A, kMar, "x"), vote(B, kBet, "y"), vote(A, kSig, "z")}, 3);
  EXPECT_EQ(d.choice, A);
  EXPECT_EQ(d.strength, kMar);
}

TEST(JudgementRule, MoreVotesThanWantedIsAnError) {
  EXPECT_THROW(decide_pair({vote(A, kSig, "x"), vote(A, kSig, "y")}, 1), Error);
  EXPECT_THROW(decide_pair({}, 0), Error);
  EXPECT_THROW(decide_pair({}, 4), Error);
}

}  // namespace
}  // namespace posttrain::annotate
