// Math problem families with exact (rational) answers: multi-step arithmetic and templated word
// problems, at three difficulty levels, deterministic in (seed, index). Each problem carries a
// worked reference solution whose equations the step checker can verify.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "synthetic/rational.h"

namespace posttrain::synthetic {

// 1 easy, 2 medium, 3 hard; 0 = mixed (each problem draws its own level).
// Accepts "easy|medium|hard|mixed" or "0".."3"; throws UsageError otherwise.
int parse_difficulty(const std::string& text);
std::string difficulty_name(int level);

struct MathProblem {
  std::string id;
  std::string family;  // "arithmetic", "shopping", "sharing", "speed", "discount"
  int difficulty = 1;
  std::string prompt;
  Rational answer;
  std::string solution;  // a worked solution ending in "Answer: ..."
};

// The index-th problem of a run. Same (seed, index, difficulty) -> same problem.
MathProblem make_math_problem(uint64_t seed, int64_t index, int difficulty);
// `count` problems with distinct prompts (exact duplicates are skipped and replaced).
std::vector<MathProblem> make_math_problems(uint64_t seed, int64_t count, int difficulty);

nlohmann::json to_json(const MathProblem& p);

// What every math prompt asks for, so checkers can find the answer.
extern const char kMathAnswerInstruction[];

}  // namespace posttrain::synthetic
