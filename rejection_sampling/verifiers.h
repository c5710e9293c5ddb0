// The verifiers of synthetic/ chosen by a prompt's kind: math answers (check_math: the final
// answer against the exact expected value, shown equations recomputed), code (check_code: the
// first fenced block run against the unit tests in the sandbox), tool use (check_tool_attempt:
// calls executed, the final answer compared). One candidate is one assistant turn.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "rejection_sampling/config.h"

namespace posttrain::rejection_sampling {

struct Verdict {
  bool passed = false;
  std::string verdict;  // pass | fail | error | timeout | limit
  std::string feedback;
  nlohmann::json details;
};

// Checks that `checker` holds what `kind` needs (math: a numeric answer; code: tests as assert
// source or a list; tool: known tool names); throws InputError at `where` (field named).
void check_checker(const std::string& kind, const nlohmann::json& checker, const Location& where);

// The scorer name of a kind's verdicts in the store: "verify:math", "verify:code", ...
std::string verifier_name(const std::string& kind);

class Verifiers {
 public:
  explicit Verifiers(VerifierOptions options);
  ~Verifiers();
  // Verdicts of `texts` (in parallel on options.workers). The sandbox starts on first need.
  std::vector<Verdict> verify(const std::string& kind, const nlohmann::json& checker,
                              const std::vector<std::string>& texts);

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace posttrain::rejection_sampling
