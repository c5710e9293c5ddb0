// Tools that really run, in the call format of Llama 3.1's built-in tools (see README.md):
// an assistant message `<|python_tag|>NAME.call(arg="...")` (ended by <|eom_id|>) calls a tool;
// raw Python after <|python_tag|> runs in the code interpreter; the output comes back as an
// `ipython` message. Tools: calculator (exact rational arithmetic; alias wolfram_alpha), lookup
// over a local document set (alias brave_search), python (the sandbox; alias code_interpreter).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "synthetic/sandbox.h"

namespace posttrain::synthetic {

struct ToolCall {
  std::string tool;                         // canonical name: calculator | lookup | python
  std::string written_name;                 // as the model wrote it (e.g. "brave_search")
  std::map<std::string, std::string> args;  // keyword arguments
  std::string code;                         // python: the program
};

// Parses the call in an assistant message holding <|python_tag|>; nullopt when there is no tag.
// Throws InputError (field "tool_call") when the call is malformed.
std::optional<ToolCall> parse_tool_call(const std::string& message);

struct Document {
  std::string title;
  std::string text;
};

// A small built-in set of (fictional) reference documents, so answers need the lookup tool.
const std::vector<Document>& builtin_documents();
// *.txt and *.md files of `dir` (title: the file name without extension). IoError when unreadable
// or empty.
std::vector<Document> load_documents(const std::string& dir);

struct ToolResult {
  bool ok = false;
  std::string output;  // what goes into the ipython message
};

class ToolRegistry {
 public:
  // `sandbox` may be null: then the python tool is not offered.
  ToolRegistry(const Sandbox* sandbox, std::vector<Document> documents);

  std::vector<std::string> names() const;
  bool has(const std::string& name) const;
  ToolResult run(const ToolCall& call, int slot = 0) const;

  ToolResult calculator(const std::string& expression) const;
  ToolResult lookup(const std::string& query) const;
  ToolResult python(const std::string& code, int slot) const;

 private:
  const Sandbox* sandbox_;
  std::vector<Document> documents_;
};

// The Llama 3.1 system prompt that enables tool calls for `tools`.
std::string tool_system_prompt(const std::vector<std::string>& tools);

// One attempt at a tool task, executed: its assistant messages, the ipython results between
// them, and the final answer text.
struct ToolRun {
  nlohmann::json messages = nlohmann::json::array();  // assistant / ipython messages in order
  std::string final_text;                             // last assistant message ("" when none)
  int calls = 0;
  int successful_calls = 0;
  std::vector<std::string> errors;  // tool errors and disallowed tools
};

// Splits `attempt` (a string whose tool-call messages end in <|eom_id|>, or a list of assistant
// message strings) into messages, runs each call with `registry` (only tools in `allowed`), and
// appends an ipython message with each output.
ToolRun execute_tool_attempt(const nlohmann::json& attempt, const ToolRegistry& registry,
                             const std::vector<std::string>& allowed, int slot = 0);

struct ToolCheck {
  bool passed = false;
  std::string verdict;  // pass | fail
  std::string given;    // the final answer found
  std::string feedback;
  ToolRun run;
  nlohmann::json details() const;
};

// Executes the attempt and checks its final answer against `expected` (a number compares as a
// rational; text compares case- and punctuation-insensitively; null = no answer check). With
// require_tool_use, an answer without one successful tool call fails.
ToolCheck check_tool_attempt(const nlohmann::json& attempt, const nlohmann::json& expected,
                             const ToolRegistry& registry, const std::vector<std::string>& allowed,
                             bool require_tool_use, int slot = 0);

}  // namespace posttrain::synthetic
