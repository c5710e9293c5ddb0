// Tool-use tasks whose answers need a tool that really runs: exact arithmetic beyond mental
// math (calculator), facts from the local documents (lookup, alone or with the calculator), and
// small computations best written as a program (python). Deterministic in (seed, index).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace posttrain::synthetic {

struct ToolProblem {
  std::string id;
  std::string family;  // calc | lookup | lookup_calc | python
  int difficulty = 1;
  std::string system;  // Llama 3.1 tool system prompt
  std::string prompt;
  std::vector<std::string> tools;
  nlohmann::json answer;  // string (number as text, or a name)
};

ToolProblem make_tool_problem(uint64_t seed, int64_t index, int difficulty);
std::vector<ToolProblem> make_tool_problems(uint64_t seed, int64_t count, int difficulty);
nlohmann::json to_json(const ToolProblem& p);

}  // namespace posttrain::synthetic
