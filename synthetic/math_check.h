// Checks a math response: finds the final answer (the last \boxed{...}, else a last line
// "Answer: ..."), compares it exactly as a rational with the expected answer (0.5 == 1/2,
// 41 != 42), and evaluates every equation the response shows ("12 + 5 = 17") with the exact
// calculator, reporting the wrong ones.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "synthetic/rational.h"

namespace posttrain::synthetic {

struct WrongStep {
  int line = 0;          // 1-based line of the response
  std::string text;      // "12 + 5 = 18"
  std::string computed;  // what the left side really is, "17"
};

struct MathCheck {
  bool passed = false;
  std::string verdict;  // "pass" or "fail"
  std::string given;    // the final answer as written ("" when none was found)
  bool answer_correct = false;
  int steps_checked = 0;
  std::vector<WrongStep> wrong_steps;
  std::string feedback;  // for the self-correction turn; never reveals the answer
  nlohmann::json details() const;
};

// The final answer text: contents of the last \boxed{...} (braces balanced), else the text after
// "Answer:" on the last non-empty line (markdown bold allowed). nullopt when there is neither.
std::optional<std::string> extract_final_answer(const std::string& response);

// Equations shown in `response` whose sides both evaluate as arithmetic, checked exactly.
// Sets steps_checked and wrong_steps of *check.
void check_steps(const std::string& response, MathCheck* check);

// Full check. With check_steps_too, a correct answer with a wrong step still fails.
MathCheck check_math(const std::string& response, const Rational& expected,
                     bool check_steps_too = true);

}  // namespace posttrain::synthetic
