// Code problems: a description, a Python function signature and unit tests as `assert` source.
// Built-in families (arithmetic functions, string and list transforms) draw their parameters and
// test inputs from (seed, index) and compute expected outputs with a C++ reference; problems can
// also be read from JSONL.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace posttrain::synthetic {

struct CodeProblem {
  std::string id;
  std::string family;  // built-in family name, or "jsonl"
  int difficulty = 1;
  std::string description;
  std::string signature;           // "def rotate_right(xs: list[int]) -> list[int]:"
  std::string entry_point;         // "rotate_right"
  std::vector<std::string> tests;  // one assert statement each
  nlohmann::json params = nlohmann::json::object();  // drawn family parameters (base, k, ...)

  std::string tests_source() const;  // the asserts joined by newlines
  std::string prompt() const;        // what the model is asked
};

// Names of the built-in families, by difficulty (1..3).
std::vector<std::string> code_families(int difficulty);

// The index-th built-in problem of a run (difficulty 0 = mixed).
CodeProblem make_code_problem(uint64_t seed, int64_t index, int difficulty);
// `count` built-in problems with distinct prompts+tests.
std::vector<CodeProblem> make_code_problems(uint64_t seed, int64_t count, int difficulty);

// Reads problems from JSONL: {"id", "description", "signature", "tests": "src" | ["assert ..."],
// "entry_point"?, "difficulty"?}. Bad lines throw InputError naming file, line and field.
std::vector<CodeProblem> load_code_problems(const std::string& path);

// Splits assert source into statements (one per non-empty, non-comment line).
std::vector<std::string> split_tests(const std::string& source);

nlohmann::json to_json(const CodeProblem& p);

// A Python string literal for `s` (double quotes, escapes).
std::string py_str(const std::string& s);

}  // namespace posttrain::synthetic
