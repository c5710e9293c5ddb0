// Near-duplicate responses (see near_duplicate.h).
#include "core/data/near_duplicate.h"

#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace posttrain::core {

NearDuplicateRule parse_near_duplicate_rule(const std::string& name) {
  if (name == "off") return NearDuplicateRule::kOff;
  if (name == "exact") return NearDuplicateRule::kExact;
  if (name == "normalized") return NearDuplicateRule::kNormalized;
  throw UsageError("unknown near-duplicate rule '" + name + "' (off, exact, normalized)");
}

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

// Word n-grams (n = 3, or the whole text when shorter) joined by a space.
std::set<std::string> shingles(std::string_view s) {
  const auto w = words(s);
  std::set<std::string> out;
  const size_t n = w.size() < 3 ? w.size() : 3;
  if (n == 0) return out;
  for (size_t i = 0; i + n <= w.size(); ++i) {
    std::string g(w[i]);
    for (size_t k = 1; k < n; ++k) (g += ' ') += w[i + k];
    out.insert(std::move(g));
  }
  return out;
}

}  // namespace

std::string normalize_for_comparison(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool pending_space = false;
  for (char c : text) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  return out;
}

double trigram_jaccard(std::string_view a, std::string_view b) {
  const auto sa = shingles(a), sb = shingles(b);
  if (sa.empty() && sb.empty()) return 1.0;
  size_t common = 0;
  for (const auto& g : sa) common += sb.count(g);
  return static_cast<double>(common) / static_cast<double>(sa.size() + sb.size() - common);
}

bool near_duplicate(std::string_view a, std::string_view b, const NearDuplicateOptions& o) {
  switch (o.rule) {
    case NearDuplicateRule::kOff:
      return false;
    case NearDuplicateRule::kExact:
      if (a == b) return true;
      break;
    case NearDuplicateRule::kNormalized:
      break;
  }
  const std::string na = normalize_for_comparison(a), nb = normalize_for_comparison(b);
  if (o.rule == NearDuplicateRule::kNormalized && na == nb) return true;
  return o.similarity > 0 && trigram_jaccard(na, nb) >= o.similarity;
}

std::string text_of(const nlohmann::json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string out;
  if (!content.is_array()) return content.dump();
  for (const auto& m : content) {
    if (!out.empty()) out += '\n';
    if (m.is_object() && m.contains("role") && m["role"].is_string()) {
      out += m["role"].get<std::string>() + ": ";
    }
    if (m.is_object() && m.contains("content") && m["content"].is_string()) {
      out += m["content"].get<std::string>();
    } else if (m.is_object() && m.contains("tool_calls")) {
      out += m["tool_calls"].dump();
    } else {
      out += m.dump();
    }
  }
  return out;
}

}  // namespace posttrain::core
