#include "common/json_depth.h"

#include <algorithm>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain {

namespace {

// Position just past the string whose opening quote is at `p` (or `end` when unterminated).
const char* skip_string(const char* p, const char* end) {
  for (++p; p < end; ++p) {
    if (*p == '\\') {
      ++p;  // the escaped character, whatever it is
    } else if (*p == '"') {
      return p + 1;
    }
  }
  return end;
}

// Position past a comment starting at `p` ('/' followed by '/' or '*'), or `p` + 1 otherwise.
const char* skip_comment(const char* p, const char* end) {
  if (p + 1 >= end) return p + 1;
  if (p[1] == '/') {
    while (p < end && *p != '\n') ++p;
    return p;
  }
  if (p[1] == '*') {
    for (p += 2; p + 1 < end; ++p) {
      if (p[0] == '*' && p[1] == '/') return p + 2;
    }
    return end;
  }
  return p + 1;
}

}  // namespace

void check_json_depth(const char* begin, const char* end, const Location& where, int max_depth) {
  int depth = 0;
  // The top-level field the scan is inside: the last key read at depth 1 of an object, or the
  // element index at depth 1 of an array.
  bool top_is_array = false;
  int64_t top_index = 0;
  const char* key_begin = nullptr;
  const char* key_end = nullptr;
  for (const char* p = begin; p < end;) {
    char c = *p;
    if (c == '"') {
      const char* after = skip_string(p, end);
      if (depth == 1 && !top_is_array) {
        key_begin = p + 1;
        key_end = after > key_begin ? after - 1 : after;
      }
      p = after;
      continue;
    }
    if (c == '/') {
      p = skip_comment(p, end);
      continue;
    }
    if (c == '{' || c == '[') {
      if (depth == 0) top_is_array = c == '[';
      if (++depth > max_depth) {
        Location at = where;
        if (top_is_array) {
          at.field = "[" + std::to_string(top_index) + "]";
        } else if (key_begin) {
          at.field.assign(key_begin, std::min<size_t>(key_end - key_begin, 80));
        }
        throw InputError(at, "JSON nested deeper than " + std::to_string(max_depth) +
                                 " levels (objects and arrays); refusing it");
      }
    } else if (c == '}' || c == ']') {
      if (depth > 0) --depth;
    } else if (c == ',' && depth == 1 && top_is_array) {
      ++top_index;
    }
    ++p;
  }
}

nlohmann::json parse_json(const std::string& text, const Location& where, bool ignore_comments) {
  check_json_depth(text, where);
  try {
    return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/true, ignore_comments);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(where, std::string("not valid JSON (") + e.what() + ")");
  }
}

int json_depth(const nlohmann::json& value) {
  int deepest = 0;
  std::vector<std::pair<const nlohmann::json*, int>> stack = {{&value, 1}};
  while (!stack.empty()) {
    auto [v, d] = stack.back();
    stack.pop_back();
    if (!v->is_structured()) continue;
    if (d > deepest) deepest = d;
    for (const auto& child : *v) stack.emplace_back(&child, d + 1);
  }
  return deepest;
}

}  // namespace posttrain
