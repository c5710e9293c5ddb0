// Math problem families with exact (rational) answers: multi-step arithmetic and templated word
// problems, at three difficulty levels, deterministic in (seed, index). Each problem carries a
// worked reference solution whose equations the step checker can verify.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "synthetic/draw_filter.h"

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

// The family names, in the order problems draw them.
const std::vector<std::string>& math_family_names();

// The index-th problem of a run. Same (seed, index, difficulty, families) -> same problem.
// `families` (names from math_family_names()) restricts the draw; empty = every family, and
// then the problems are those of earlier versions (the filter draws among the named ones only).
MathProblem make_math_problem(uint64_t seed, int64_t index, int difficulty,
                              const DrawFilter& filter = {});
// `count` problems with distinct prompts (exact duplicates are skipped and replaced).
std::vector<MathProblem> make_math_problems(uint64_t seed, int64_t count, int difficulty,
                                            const DrawFilter& filter = {});

nlohmann::json to_json(const MathProblem& p);

// What every math prompt asks for, so checkers can find the answer (the opt-in addition family
// asks only for the last "Answer: ..." line).
extern const char kMathAnswerInstruction[];

}  // namespace posttrain::synthetic
