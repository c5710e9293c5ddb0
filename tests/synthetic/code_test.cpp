// Code problems and the code checker: reference solutions pass every generated test; near
// misses (extra output, partial solutions, syntax errors, crashes, loops) get the right verdict
// and feedback.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "synthetic/code_check.h"
#include "synthetic/code_problems.h"

namespace posttrain::synthetic {
namespace {

const Sandbox& sandbox() {
  static Sandbox s([] {
    SandboxOptions o;
    o.uid_base = 61200;
    o.limits.wall_seconds = 3;
    return o;
  }());
  return s;
}

std::string fenced(const std::string& code) {
  return "Here is my solution.\n\n```python\n" + code + "```\n\nIt works.";
}

nlohmann::json reference_solutions() {
  std::ifstream in(std::string(POSTTRAIN_FIXTURES) + "/synthetic/reference_solutions.json");
  return nlohmann::json::parse(in);
}

std::string fill(std::string code, const nlohmann::json& params) {
  for (const auto& [key, value] : params.items()) {
    std::string slot = "{" + key + "}";
    for (size_t at; (at = code.find(slot)) != std::string::npos;) {
      code.replace(at, slot.size(), value.dump());
    }
  }
  return code;
}

const std::vector<std::string> kClampTests = {
    "assert clamp(5, 0, 3) == 3", "assert clamp(-1, 0, 3) == 0", "assert clamp(2, 0, 3) == 2"};

TEST(FirstCodeBlock, TakesTheFirstFence) {
  EXPECT_EQ(*first_code_block("a\n```python\nx = 1\n```\nb\n```\ny = 2\n```"), "x = 1\n");
  EXPECT_EQ(*first_code_block("```\nz = 3\n```"), "z = 3\n");
  EXPECT_FALSE(first_code_block("no code here"));
  EXPECT_FALSE(first_code_block("```python\nunterminated"));
}

TEST(CheckCode, CorrectCodePasses) {
  CodeCheck c = check_code(fenced("def clamp(x, lo, hi):\n    return max(lo, min(hi, x))\n"),
                           kClampTests, sandbox());
  EXPECT_TRUE(c.passed) << c.feedback << c.run.err;
  EXPECT_EQ(c.verdict, "pass");
  EXPECT_EQ(c.n_passed, 3);
}

TEST(CheckCode, CorrectCodeThatPrintsExtraOutputStillPasses) {
  CodeCheck c = check_code(fenced("print('debug: loading')\n"
                                  "def clamp(x, lo, hi):\n"
                                  "    print('clamp called', x, end='')\n"
                                  "    return max(lo, min(hi, x))\n"),
                           kClampTests, sandbox());
  EXPECT_TRUE(c.passed) << c.feedback;
  EXPECT_NE(c.run.out.find("debug: loading"), std::string::npos);
}

TEST(CheckCode, PartialSolutionReportsWhichAssertsFailed) {
  // Clamps only from above.
  CodeCheck c =
      check_code(fenced("def clamp(x, lo, hi):\n    return min(hi, x)\n"), kClampTests, sandbox());
  EXPECT_FALSE(c.passed);
  EXPECT_EQ(c.verdict, "fail");
  EXPECT_EQ(c.n_passed, 2);
  ASSERT_EQ(c.tests.size(), 3u);
  EXPECT_FALSE(c.tests[1].passed);
  EXPECT_EQ(c.tests[1].error, "got -1, expected 0");
  EXPECT_NE(c.feedback.find("1 of 3 tests failed"), std::string::npos) << c.feedback;
  EXPECT_NE(c.feedback.find("assert clamp(-1, 0, 3) == 0  ->  got -1, expected 0"),
            std::string::npos)
      << c.feedback;
}

TEST(CheckCode, ExceptionsInTestsAreReportedWithTheirText) {
  CodeCheck c =
      check_code(fenced("def clamp(x, lo, hi):\n    return x / (x - 2)\n"), kClampTests, sandbox());
  EXPECT_EQ(c.verdict, "fail");
  EXPECT_EQ(c.tests[2].error, "ZeroDivisionError: division by zero");
  CodeCheck wrong_name =
      check_code(fenced("def clip(x, lo, hi):\n    return x\n"), kClampTests, sandbox());
  EXPECT_EQ(wrong_name.n_passed, 0);
  EXPECT_EQ(wrong_name.tests[0].error, "NameError: name 'clamp' is not defined");
}

TEST(CheckCode, SyntaxErrorStopsAtTheStaticCheck) {
  CodeCheck c = check_code(fenced("def clamp(x, lo, hi)\n    return x\n"), kClampTests, sandbox());
  EXPECT_EQ(c.verdict, "error");
  EXPECT_EQ(c.stage, "static");
  EXPECT_NE(c.feedback.find("SyntaxError"), std::string::npos) << c.feedback;
  EXPECT_TRUE(c.tests.empty());
}

TEST(CheckCode, MissingBlockCrashAndLoopsAreReported) {
  CodeCheck none = check_code("def clamp(x, lo, hi): return x", kClampTests, sandbox());
  EXPECT_EQ(none.verdict, "error");
  EXPECT_EQ(none.stage, "extract");
  CodeCheck crash = check_code(fenced("raise RuntimeError('boom')\n"), kClampTests, sandbox());
  EXPECT_EQ(crash.verdict, "error");
  EXPECT_EQ(crash.stage, "load");
  EXPECT_NE(crash.feedback.find("RuntimeError: boom"), std::string::npos);
  CodeCheck exits = check_code(fenced("import os\nos._exit(0)\n"), kClampTests, sandbox());
  EXPECT_EQ(exits.verdict, "error");
  CodeCheck loop = check_code(fenced("def clamp(x, lo, hi):\n    while True:\n        pass\n"),
                              kClampTests, sandbox());
  EXPECT_TRUE(loop.verdict == "timeout" || loop.verdict == "limit") << loop.run.describe();
  EXPECT_FALSE(loop.passed);
}

TEST(CodeProblems, DeterministicBySeed) {
  auto a = make_code_problems(5, 12, 0), b = make_code_problems(5, 12, 0);
  auto c = make_code_problems(6, 12, 0);
  int same = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(to_json(a[i]).dump(), to_json(b[i]).dump());
    same += a[i].tests == c[i].tests;
  }
  EXPECT_LT(same, 3);
}

TEST(CodeProblems, ReferenceSolutionsPassEveryGeneratedTest) {
  // Expected values come from C++ references; the solutions are independent Python.
  auto solutions = reference_solutions();
  std::vector<CodeProblem> problems;
  std::set<std::string> families;
  for (int level = 1; level <= 3; ++level) {
    for (auto& p : make_code_problems(40 + level, 6, level)) {
      families.insert(p.family);
      problems.push_back(std::move(p));
    }
  }
  EXPECT_GE(families.size(), 7u);
  std::vector<CodeCheck> checks(problems.size());
  parallel_for(static_cast<int64_t>(problems.size()), 2, [&](int64_t i, int worker) {
    std::string code =
        fill(solutions.at(problems[i].family).get<std::string>(), problems[i].params);
    checks[i] = check_code(fenced(code), problems[i].tests, sandbox(), worker);
  });
  for (size_t i = 0; i < problems.size(); ++i) {
    EXPECT_TRUE(checks[i].passed) << problems[i].family << ": " << checks[i].feedback
                                  << checks[i].run.err;
    EXPECT_EQ(checks[i].n_passed, static_cast<int>(problems[i].tests.size()));
  }
}

TEST(CodeProblems, LoadsJsonlAndNamesTheBadLine) {
  auto problems =
      load_code_problems(std::string(POSTTRAIN_FIXTURES) + "/synthetic/code_problems.jsonl");
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].tests, kClampTests);  // the comment line is dropped
  EXPECT_EQ(problems[0].difficulty, 1);
  EXPECT_EQ(problems[1].tests.size(), 3u);
  std::string bad = std::string(POSTTRAIN_FIXTURES) + "/synthetic/code_problems_bad.jsonl";
  try {
    load_code_problems(bad);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(e.where().line, 2);
    EXPECT_EQ(e.where().field, "tests");
  }
}

}  // namespace
}  // namespace posttrain::synthetic
