// `synth --family` (drawing only some families) and `synth --reference` (each problem's own
// worked solution checked as its candidate): seed SFT data for recipes/tiny_math.json.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>

#include "common/error.h"
#include "synthetic/math_problems.h"
#include "synthetic/pipeline.h"
#include "synthetic/tool_problems.h"

namespace posttrain::synthetic {
namespace {

TEST(Families, FilterDrawsOnlyTheNamedFamilies) {
  for (const auto& p : make_math_problems(5, 40, 0, {{"shopping", "speed"}})) {
    EXPECT_TRUE(p.family == "shopping" || p.family == "speed") << p.family;
  }
  for (const auto& p : make_tool_problems(5, 30, 1, {{"calc"}})) EXPECT_EQ(p.family, "calc");
  EXPECT_THROW(make_math_problems(5, 3, 0, {{"algebra"}}), UsageError);
}

TEST(Families, AdditionIsOptInAndLeavesDefaultDrawsAlone) {
  // The opt-in family is never drawn by default, so earlier seeds give the same problems.
  for (const auto& p : make_math_problems(7, 200, 0)) EXPECT_NE(p.family, "addition");
  // Its answers, recomputed from the prompt's two numbers.
  const std::regex sum(R"(^What is (\d+) ([+-]) (\d+)\? End with a last line "Answer: \.\.\."\.$)");
  for (int level = 1; level <= 3; ++level) {
    for (const auto& p : make_math_problems(11, 50, level, {{"addition"}})) {
      std::smatch m;
      ASSERT_TRUE(std::regex_search(p.prompt, m, sum)) << p.prompt;
      const long long a = std::stoll(m[1]), b = std::stoll(m[3]);
      const long long want = m[2] == "+" ? a + b : a - b;
      EXPECT_EQ(p.answer.str(), std::to_string(want)) << p.prompt;
      const long long lo = level == 1 ? 10 : level == 2 ? 100 : 1000;
      EXPECT_TRUE(a >= lo && a < lo * 10 && b >= lo && b < lo * 10) << p.prompt;
      if (level == 1) EXPECT_EQ(m[2], "+");
    }
  }
}

TEST(Families, ReferenceSolutionsPassTheirOwnChecker) {
  SynthOptions o;
  o.kind = Kind::kMath;
  o.count = 30;
  o.seed = 3;
  o.filter.families = {"addition", "arithmetic"};
  o.reference = true;
  o.near_dup_threshold = 0;
  SynthResult r = run_synth(o);
  ASSERT_EQ(r.items.size(), 30u);
  for (const auto& item : r.items) {
    ASSERT_TRUE(item.has_candidates);
    EXPECT_TRUE(item.kept()) << item.id << ": " << item.output_line().dump();
    // The kept dialogue's answer is the problem's reference solution, verbatim.
    EXPECT_EQ(item.correction.attempts.at(0).candidate,
              item.problem.at("reference_solution").get<std::string>());
  }
}

TEST(Families, CalculatorReferenceCallsTheToolAndPasses) {
  SynthOptions o;
  o.kind = Kind::kTool;
  o.count = 6;
  o.seed = 4;
  o.difficulty = 1;
  o.filter.families = {"calc"};
  o.reference = true;
  SynthResult r = run_synth(o);
  for (const auto& item : r.items) {
    EXPECT_TRUE(item.kept()) << item.output_line().dump();
    const std::string ref = item.problem.at("reference_solution");
    EXPECT_EQ(ref.rfind("<|python_tag|>calculator.call(expression=", 0), 0u) << ref;
  }
  // Families without an obvious call carry none, and a run of only those is refused.
  o.filter.families = {"lookup"};
  EXPECT_THROW(run_synth(o), UsageError);
  o.filter.families = {};
  o.kind = Kind::kMath;
  o.candidates = "x.jsonl";
  EXPECT_THROW(run_synth(o), UsageError);  // --reference and --candidates together
}

TEST(Families, TrainAndHeldoutSplitsNeverShareAProblem) {
  // Both sides drawn heavily from the same small space (two-digit sums: 8100 prompts) with the
  // same seed: no prompt on both sides, each side is what its predicate says, and about one
  // problem in ten of an unsplit draw is held out.
  DrawFilter train{{"addition"}, Split::kTrain}, heldout{{"addition"}, Split::kHeldout};
  std::set<std::string> train_prompts;
  for (const auto& p : make_math_problems(1, 2000, 1, train)) {
    EXPECT_FALSE(in_heldout_split(p.prompt));
    train_prompts.insert(p.prompt);
  }
  for (const auto& p : make_math_problems(1, 300, 1, heldout)) {
    EXPECT_TRUE(in_heldout_split(p.prompt));
    EXPECT_EQ(train_prompts.count(p.prompt), 0u) << p.prompt;
  }
  int held = 0;
  for (const auto& p : make_math_problems(2, 1000, 1, {{"addition"}})) held += in_heldout_split(p.prompt);
  EXPECT_GT(held, 60);
  EXPECT_LT(held, 140);
  EXPECT_THROW(parse_split("test"), UsageError);
}

}  // namespace
}  // namespace posttrain::synthetic
