// Checks a math response: finds the final answer (the last \boxed{...}, else a last line
// "Answer: ..."), compares it exactly as a rational with the expected answer (0.5 == 1/2,
// 41 != 42), and evaluates every equation the response shows ("12 + 5 = 17") with the exact
// calculator, reporting the wrong ones and the ones it cannot compute (a step that cannot be
// checked fails the answer, as a wrong one does).
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

// A numeric step that cannot be computed exactly ("2^(2^64) = 5", "25! = 1"): it fails the
// answer like a wrong step, since an unchecked claim is not a verified one.
struct UncheckedStep {
  int line = 0;
  std::string text;    // "2^(2^64) = 5"
  std::string reason;  // "number too large for exact arithmetic ..."
};

struct MathCheck {
  bool passed = false;
  std::string verdict;  // "pass" or "fail"
  std::string given;    // the final answer as written ("" when none was found)
  bool answer_correct = false;
  int steps_checked = 0;
  std::vector<WrongStep> wrong_steps;
  std::vector<UncheckedStep> unchecked_steps;
  std::string feedback;  // for the self-correction turn; never reveals the answer
  nlohmann::json details() const;
};

// The final answer text: contents of the last \boxed{...} (braces balanced), else the text after
// "Answer:" on the last non-empty line (markdown bold allowed). nullopt when there is neither.
std::optional<std::string> extract_final_answer(const std::string& response);

// Equations shown in `response` whose sides are both arithmetic (numbers, + - * / ^ !, brackets),
// checked exactly. Sets steps_checked, wrong_steps and unchecked_steps (well-formed arithmetic
// the calculator cannot compute exactly) of *check; text that does not parse is not a step.
void check_steps(const std::string& response, MathCheck* check);

// Full check. With check_steps_too, a correct answer with a wrong or unchecked step still fails.
MathCheck check_math(const std::string& response, const Rational& expected,
                     bool check_steps_too = true);

}  // namespace posttrain::synthetic
