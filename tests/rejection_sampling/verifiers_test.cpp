// The verifier path: prompts read back from a store round that `synth` wrote (kind + checker),
// math candidates with known answers (the generator's own worked solutions pass, the same
// solutions with a wrong final answer fail), the ranking putting a verified candidate above a
// higher-rewarded wrong one, and malformed checker fields named by file, line and field.
#include "rejection_sampling/verifiers.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/files.h"
#include "rejection_sampling/prompts.h"
#include "rejection_sampling/record.h"
#include "synthetic/math_problems.h"
#include "synthetic/pipeline.h"

namespace fs = std::filesystem;

namespace posttrain::rejection_sampling {
namespace {

using nlohmann::json;

std::string temp_dir(const std::string& name) {
  auto d = (fs::temp_directory_path() / (name + std::to_string(::getpid()))).string();
  posttrain::remove_tree(d);
  fs::create_directories(d);
  return d;
}

// Replaces the text after the last "Answer:" with `answer`.
std::string with_answer(const std::string& solution, const std::string& answer) {
  const auto at = solution.rfind("Answer:");
  return solution.substr(0, at) + "Answer: " + answer;
}

TEST(SampleVerifiers, StoreRoundMathProblemsVerifyTheirOwnSolutions) {
  const std::string dir = temp_dir("posttrain_rs_verify_");
  synthetic::SynthOptions so;
  so.kind = synthetic::Kind::kMath;
  so.count = 4;
  so.seed = 3;
  synthetic::write_store(synthetic::run_synth(so), dir + "/s.db", synthetic::Kind::kMath, 2,
                         "test");
  const auto prompts = read_store_prompts(dir + "/s.db", 2);
  const auto problems = synthetic::make_math_problems(3, 4, 0);
  ASSERT_EQ(prompts.size(), problems.size());
  EXPECT_THROW(read_store_prompts(dir + "/s.db", 1), UsageError);  // nothing in round 1

  Verifiers verifiers(VerifierOptions{});
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& p = prompts[i];
    const auto& problem = problems[i];
    EXPECT_EQ(p.id, problem.id);
    EXPECT_EQ(p.kind, "math");
    EXPECT_EQ(p.content, problem.prompt);
    const std::string right = problem.answer.decimal_or_fraction();
    const std::string wrong = (problem.answer + synthetic::Rational(1)).decimal_or_fraction();
    const auto v = verifiers.verify(
        p.kind, p.checker,
        {problem.solution, with_answer(problem.solution, wrong), "I do not know."});
    ASSERT_EQ(v.size(), 3u);
    EXPECT_TRUE(v[0].passed) << problem.solution << "\n" << v[0].feedback;
    EXPECT_EQ(v[0].verdict, "pass");
    EXPECT_FALSE(v[1].passed) << with_answer(problem.solution, wrong);
    EXPECT_FALSE(v[2].passed);
    EXPECT_FALSE(v[2].feedback.empty());

    // Verified first: the right solution wins over a wrong one with a higher reward.
    PromptOutcome o;
    o.prompt = &p;
    for (size_t k = 0; k < 2; ++k) {
      Candidate c;
      c.sample = static_cast<int64_t>(k);
      c.text = k == 0 ? with_answer(problem.solution, wrong) : problem.solution;
      c.verdict = v[k == 0 ? 1 : 0];
      c.reward = k == 0 ? 3.0 : -1.0;
      o.candidates.push_back(c);
    }
    const Decision d = decide(RankingRule{}, o);
    ASSERT_TRUE(d.selected);
    EXPECT_EQ(*d.selected, 1u);
    ASSERT_TRUE(d.pair);
    EXPECT_EQ(d.pair->second, 0u);
  }
  posttrain::remove_tree(dir);
}

TEST(SampleVerifiers, BadCheckerFieldsNameFileLineAndField) {
  const std::string dir = temp_dir("posttrain_rs_badrows_");
  auto expect_error = [&](const std::vector<json>& rows, const std::string& needle) {
    {
      std::ofstream out(dir + "/p.jsonl");
      for (const auto& r : rows) out << r.dump() << "\n";
    }
    try {
      read_jsonl_prompts(dir + "/p.jsonl");
      ADD_FAILURE() << "no error for " << needle;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  const json ok = {{"prompt", "2+2?"}, {"kind", "math"}, {"answer", "4"}};
  expect_error({ok, {{"prompt", "x"}, {"kind", "math"}}}, "p.jsonl:2: field 'answer'");
  expect_error({ok, ok, {{"prompt", "x"}, {"kind", "math"}, {"answer", "many"}}},
               "p.jsonl:3: field 'answer'");
  expect_error({{{"prompt", "x"}, {"kind", "code"}, {"tests", json::array({1})}}},
               "field 'tests[0]'");
  expect_error({{{"prompt", "x"}, {"kind", "tool"}, {"tools", {"browser"}}}}, "unknown tool");
  expect_error({{{"prompt", "x"}, {"kind", "poetry"}}}, "field 'kind'");
  expect_error({{{"text", "x"}}}, "p.jsonl:1");
  expect_error({{{"prompt", json::array({{{"role", "user"}, {"content", "hi"}},
                                         {{"role", "assistant"}, {"content", "yo"}}})}}},
               "assistant");
  posttrain::remove_tree(dir);
}

}  // namespace
}  // namespace posttrain::rejection_sampling
