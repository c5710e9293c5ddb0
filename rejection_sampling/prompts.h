// The prompts of a rejection-sampling run, read and checked before anything is generated:
// JSONL rows ({"prompt": string | messages} or {"messages": [...]}, optional "id", "kind" and
// the kind's checker fields), or the synthetic problems a store recorded for a round.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"

namespace posttrain::rejection_sampling {

struct SamplePrompt {
  std::string id;          // the row's / problem's id, else "line N"
  nlohmann::json content;  // a string or a message list: what the store's prompts table holds
  std::string kind;        // "" (no verifier), "math", "code" or "tool"
  nlohmann::json checker;  // math {"answer"}, code {"tests"}, tool {"tools", "answer"?}; null
  Location where;          // file and line (or store and problem id) for errors
};

// Throws InputError naming the file, line and field of the first bad row.
std::vector<SamplePrompt> read_jsonl_prompts(const std::string& path);
// Throws UsageError when the store has no synthetic problems in `round`.
std::vector<SamplePrompt> read_store_prompts(const std::string& store, int round);

}  // namespace posttrain::rejection_sampling
