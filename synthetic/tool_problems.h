// Tool-use tasks whose answers need a tool that really runs: exact arithmetic beyond mental
// math (calculator), facts from the local documents (lookup, alone or with the calculator), and
// small computations best written as a program (python). Deterministic in (seed, index).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "synthetic/draw_filter.h"

namespace posttrain::synthetic {

struct ToolProblem {
  std::string id;
  std::string family;  // calc | lookup | lookup_calc | python
  int difficulty = 1;
  std::string system;  // Llama 3.1 tool system prompt
  std::string prompt;
  std::vector<std::string> tools;
  nlohmann::json answer;  // string (number as text, or a name)
  // A correct attempt (one tool call, then the answer line) where the family has an obvious one
  // (calc); empty otherwise. `synth --reference` checks it like a candidate.
  std::string reference_solution;
};

// The family names, in the order problems draw them.
const std::vector<std::string>& tool_family_names();

// `families` restricts the draw (names from tool_family_names()); empty = every family.
ToolProblem make_tool_problem(uint64_t seed, int64_t index, int difficulty,
                              const DrawFilter& filter = {});
std::vector<ToolProblem> make_tool_problems(uint64_t seed, int64_t count, int difficulty,
                                            const DrawFilter& filter = {});
nlohmann::json to_json(const ToolProblem& p);

}  // namespace posttrain::synthetic
