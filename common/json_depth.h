// One nesting limit for every JSON the program reads (JSONL rows, config.json, tokenizer.json,
// safetensors headers, training configs, chat messages). nlohmann's parser is iterative, but
// writing a value back out (dump) and our own readers of nested structures (pre-tokenizer
// Sequences) recurse, so a hostile input nested 100,000 deep would overflow the stack. The text
// is scanned once before parsing (linear, no allocation) and refused past the limit.
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "common/error.h"

namespace posttrain {

// Deepest nesting of objects and arrays accepted anywhere (a top-level object is depth 1).
constexpr int kMaxJsonDepth = 256;

// Throws InputError when objects/arrays in [begin, end) nest deeper than `max_depth`. The
// message names `where` (file, line) plus the top-level field (key of a top-level object, or
// index of a top-level array) that holds the too-deep value, and the limit. Strings (with
// escapes) and // or /* */ comments are skipped; malformed JSON is left to the parser.
void check_json_depth(const char* begin, const char* end, const Location& where,
                      int max_depth = kMaxJsonDepth);
inline void check_json_depth(const std::string& text, const Location& where,
                             int max_depth = kMaxJsonDepth) {
  check_json_depth(text.data(), text.data() + text.size(), where, max_depth);
}

// check_json_depth, then nlohmann::json::parse; a syntax error becomes InputError at `where`.
nlohmann::json parse_json(const std::string& text, const Location& where,
                          bool ignore_comments = false);

// Depth of the deepest object/array in a parsed value (iterative: safe on any depth).
int json_depth(const nlohmann::json& value);

}  // namespace posttrain
