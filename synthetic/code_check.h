// Checks a code response: takes the first fenced code block, parses it (static check) and runs
// the unit tests against it inside the sandbox, one assert at a time, reporting which failed and
// why ("got 5, expected 6", or the exception text). Output the program prints is ignored.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "synthetic/sandbox.h"

namespace posttrain::synthetic {

struct TestOutcome {
  std::string test;  // the assert source
  bool passed = false;
  std::string error;  // "got 5, expected 6" or "NameError: name 'f' is not defined"
};

struct CodeCheck {
  bool passed = false;
  std::string verdict;   // pass | fail | error | timeout | limit
  std::string stage;     // extract | static | load | tests | run
  std::string feedback;  // for the self-correction turn
  std::vector<TestOutcome> tests;
  int n_passed = 0;
  RunResult run;  // the sandbox run (absent for an extract failure)
  nlohmann::json details() const;
};

// Contents of the first ``` fenced block (any language tag), or nullopt when there is none.
std::optional<std::string> first_code_block(const std::string& response);

// Checks `response` against `tests` (assert statements). `slot` selects the sandbox uid.
CodeCheck check_code(const std::string& response, const std::vector<std::string>& tests,
                     const Sandbox& sandbox, int slot = 0);

// Same, with the code given directly (no fenced block needed).
CodeCheck check_code_source(const std::string& code, const std::vector<std::string>& tests,
                            const Sandbox& sandbox, int slot = 0);

}  // namespace posttrain::synthetic
