// Annotation statistics against hand-derived counts, percent agreement and Cohen's kappa.
#include "annotate/stats.h"

#include <gtest/gtest.h>

namespace posttrain::annotate {
namespace {

using datastore::Choice;
using datastore::Judgement;
using datastore::Strength;

Judgement judged(int64_t task, const char* who, Choice c, Strength s, bool edit = false) {
  Judgement j;
  j.task_id = task;
  j.annotator = who;
  j.choice = c;
  j.strength = s;
  if (edit) j.edited_id = 100 + task;
  return j;
}

Judgement skipped(int64_t task, const char* who) {
  Judgement j;
  j.task_id = task;
  j.annotator = who;
  j.skip_reason = "unclear";
  return j;
}

TEST(AnnotationStats, CountsAgreementAndKappa) {
  const Choice A = Choice::kA, B = Choice::kB;
  const Strength sig = Strength::kSignificantlyBetter, bet = Strength::kBetter,
                 mar = Strength::kMarginallyBetter;
  // Four doubly-judged tasks; first raters choose A, A, B, B, second raters A, B, B, B.
  // Agreement 3/4 = 75%. P1(A) = 2/4, P2(A) = 1/4, so p_e = .5*.25 + .5*.75 = .5 and
  // kappa = (.75 - .5) / (1 - .5) = .5. Task 5 has one judgement and a skip (not doubly judged).
  std::vector<Judgement> js = {
      judged(1, "ann", A, sig), judged(1, "bob", A, bet, true), judged(2, "ann", A, bet),
      judged(2, "cat", B, bet), judged(3, "bob", B, mar),       judged(3, "ann", B, sig),
      judged(4, "cat", B, bet), judged(4, "bob", B, bet),       skipped(5, "cat"),
      judged(5, "ann", A, mar),
  };
  AnnotationStats st = stats_of(js);
  EXPECT_EQ(st.judgements, 9);
  EXPECT_EQ(st.skips, 1);
  EXPECT_EQ(st.edits, 1);
  EXPECT_EQ(st.by_annotator["ann"].judgements, 4);
  EXPECT_EQ(st.by_annotator["cat"].skips, 1);
  EXPECT_EQ(st.by_annotator["bob"].edits, 1);
  EXPECT_EQ(st.strengths["significantly_better"], 2);
  EXPECT_EQ(st.strengths["better"], 5);
  EXPECT_EQ(st.strengths["slightly_better"], 0);
  EXPECT_EQ(st.strengths["marginally_better"], 2);
  EXPECT_EQ(st.doubly_judged, 4);
  EXPECT_EQ(st.agreeing, 3);
  ASSERT_TRUE(st.percent_agreement && st.kappa);
  EXPECT_DOUBLE_EQ(*st.percent_agreement, 75.0);
  EXPECT_DOUBLE_EQ(*st.kappa, 0.5);
}

TEST(AnnotationStats, KappaIsUndefinedWhenEveryoneChoseOneSide) {
  // p_e = 1 * 1 = 1: kappa divides by zero, so it is left out; agreement is 100%.
  AnnotationStats st = stats_of({judged(1, "a", Choice::kB, Strength::kBetter),
                                 judged(1, "b", Choice::kB, Strength::kBetter)});
  EXPECT_EQ(st.percent_agreement, 100.0);
  EXPECT_FALSE(st.kappa);
  EXPECT_NE(to_table(st).find("undefined"), std::string::npos);
  EXPECT_TRUE(to_json(st)["agreement"]["kappa"].is_null());
}

TEST(AnnotationStats, NoDoublyJudgedTasksMeansNoAgreement) {
  AnnotationStats st = stats_of({judged(1, "a", Choice::kA, Strength::kBetter)});
  EXPECT_FALSE(st.percent_agreement);
  EXPECT_FALSE(st.kappa);
}

}  // namespace
}  // namespace posttrain::annotate
