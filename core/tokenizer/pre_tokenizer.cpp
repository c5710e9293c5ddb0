// See pre_tokenizer.h. Each step maps a list of pieces to a finer list. A split first labels the
// piece's bytes as alternating (range, is_match) runs, exactly as tokenizers' Pattern does, then
// applies the split behaviour (Isolated, Removed, MergedWithPrevious, MergedWithNext,
// Contiguous) and drops empty pieces.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "core/tokenizer/pre_tokenizer.h"

#include <pcre2.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/json_depth.h"
#include "core/tokenizer/unicode.h"

namespace posttrain::core {

using nlohmann::json;

namespace {

// GPT-2's pattern, used by ByteLevel when use_regex is true.
const char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

using Run = std::pair<std::pair<size_t, size_t>, bool>;  // ((begin, end), is_match)

// Per-thread PCRE2 scratch: match data and a JIT stack large enough for long whitespace runs.
struct MatchScratch {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* stack = nullptr;
  MatchScratch() {
    data = pcre2_match_data_create(32, nullptr);
    context = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    if (context && stack) pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

MatchScratch& scratch() {
  thread_local MatchScratch s;
  return s;
}

Behavior parse_behavior(const json& spec, const Location& where, const std::string& path) {
  if (!spec.contains("behavior") || !spec["behavior"].is_string()) {
    throw InputError({where.file, where.line, path + ".behavior"}, "missing split behavior");
  }
  const std::string b = spec["behavior"].get<std::string>();
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  throw InputError({where.file, where.line, path + ".behavior"},
                   "unsupported split behavior '" + b + "'");
}

// Applies `behavior` to the labelled runs of `piece` (offsets relative to piece.begin) and
// appends the resulting pieces.
void emit_split(const Piece& piece, std::vector<Run>& runs, Behavior behavior,
                std::vector<Piece>* out) {
  std::vector<Run> merged;
  merged.reserve(runs.size());
  bool previous_match = false;
  switch (behavior) {
    case Behavior::kIsolated:
      merged.swap(runs);
      break;
    case Behavior::kRemoved:
      for (const Run& r : runs) {
        if (!r.second) merged.push_back(r);
      }
      break;
    case Behavior::kMergedWithPrevious:
      for (const Run& r : runs) {
        if (r.second && !previous_match && !merged.empty()) {
          merged.back().first.second = r.first.second;
        } else {
          merged.push_back({r.first, false});
        }
        previous_match = r.second;
      }
      break;
    case Behavior::kMergedWithNext:
      for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
        if (it->second && !previous_match && !merged.empty()) {
          merged.back().first.first = it->first.first;
        } else {
          merged.push_back({it->first, false});
        }
        previous_match = it->second;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    case Behavior::kContiguous:
      for (size_t i = 0; i < runs.size(); ++i) {
        if (i > 0 && runs[i].second == previous_match) {
          merged.back().first.second = runs[i].first.second;
        } else {
          merged.push_back({runs[i].first, false});
        }
        previous_match = runs[i].second;
      }
      break;
  }
  const size_t shift = piece.prefixed ? 1 : 0;
  for (const Run& r : merged) {
    size_t b = r.first.first, e = r.first.second;
    if (b >= e) continue;
    Piece p;
    p.begin = piece.begin + b;
    p.end = piece.begin + e;
    p.prefixed = piece.prefixed && b == 0;
    p.src_begin = piece.src_begin + (b >= shift ? b - shift : 0);
    out->push_back(p);
  }
}

// Turns match ranges into runs covering [0, n).
void matches_to_runs(const std::vector<std::pair<size_t, size_t>>& matches, size_t n, bool invert,
                     std::vector<Run>* runs) {
  runs->clear();
  size_t prev = 0;
  for (const auto& m : matches) {
    if (prev != m.first) runs->push_back({{prev, m.first}, invert});
    runs->push_back({{m.first, m.second}, !invert});
    prev = m.second;
  }
  if (prev != n) runs->push_back({{prev, n}, invert});
}

// Oniguruma (what Hugging Face tokenizers uses) matches \s to Unicode White_Space; PCRE2's
// UCP \s also takes U+180E and a few others. Spell \s / \S as the property so both agree.
// (One difference remains: PCRE2 10.42 classifies by Unicode 14, so a code point assigned later
// counts as unassigned rather than, say, a letter.)
std::string onig_compatible(const std::string& pattern) {
  std::string out;
  out.reserve(pattern.size() + 32);
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '\\' || i + 1 == pattern.size()) {
      out.push_back(pattern[i]);
      continue;
    }
    char next = pattern[i + 1];
    if (next == 's') {
      out += "\\p{White_Space}";
    } else if (next == 'S') {
      out += "\\P{White_Space}";
    } else if (next == 'Q') {  // \Q...\E quotes: copy verbatim
      size_t end = pattern.find("\\E", i + 2);
      end = end == std::string::npos ? pattern.size() : end + 2;
      out.append(pattern, i, end - i);
      i = end - 1;
      continue;
    } else {
      out.push_back('\\');
      out.push_back(next);
    }
    ++i;
  }
  return out;
}

}  // namespace

Regex::Regex(const std::string& source_pattern, bool literal, const Location& where) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  uint32_t options = PCRE2_UTF | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  const std::string pattern = literal ? source_pattern : onig_compatible(source_pattern);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    throw InputError(where, "regex does not compile at offset " + std::to_string(offset) + ": " +
                                reinterpret_cast<const char*>(message));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT fails
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void Regex::find_all(const char* s, size_t n, std::vector<std::pair<size_t, size_t>>* out) const {
  auto* code = static_cast<pcre2_code*>(code_);
  MatchScratch& sc = scratch();
  size_t start = 0;
  while (start <= n) {
    int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s), n, start, PCRE2_NO_UTF_CHECK,
                         sc.data, sc.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      throw Error(std::string("tokenizer regex match failed: ") +
                  reinterpret_cast<const char*>(message));
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(sc.data);
    out->push_back({ov[0], ov[1]});
    if (ov[1] > ov[0]) {
      start = ov[1];
    } else {
      if (ov[1] >= n) break;
      start = ov[1] + unicode::utf8_length(static_cast<unsigned char>(s[ov[1]]));
    }
  }
}

struct PreTokenizer::Step {
  virtual ~Step() = default;
  // Refines `in` into *out; pieces point into *buffer, which a step may append to.
  virtual void apply(const std::vector<Piece>& in, std::string* buffer,
                     std::vector<Piece>* out) const = 0;
  virtual bool is_byte_level() const { return false; }
};

namespace {

struct SplitStep : PreTokenizer::Step {
  std::unique_ptr<Regex> regex;
  Behavior behavior = Behavior::kIsolated;
  bool invert = false;
  void apply(const std::vector<Piece>& in, std::string* buffer,
             std::vector<Piece>* out) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    std::vector<Run> runs;
    for (const Piece& p : in) {
      matches.clear();
      regex->find_all(buffer->data() + p.begin, p.size(), &matches);
      matches_to_runs(matches, p.size(), invert, &runs);
      emit_split(p, runs, behavior, out);
    }
  }
};

struct ByteLevelStep : PreTokenizer::Step {
  std::unique_ptr<Regex> regex;  // null when use_regex is false
  bool add_prefix_space = false;
  bool is_byte_level() const override { return true; }
  void apply(const std::vector<Piece>& in, std::string* buffer,
             std::vector<Piece>* out) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    std::vector<Run> runs;
    std::string copy;
    for (const Piece& original : in) {
      Piece p = original;
      if (add_prefix_space && (p.size() == 0 || (*buffer)[p.begin] != ' ')) {
        copy.assign(1, ' ');
        copy.append(*buffer, p.begin, p.size());
        p.begin = buffer->size();
        buffer->append(copy);
        p.end = buffer->size();
        p.prefixed = true;
      }
      if (!regex) {
        if (p.size() > 0) out->push_back(p);
        continue;
      }
      matches.clear();
      regex->find_all(buffer->data() + p.begin, p.size(), &matches);
      matches_to_runs(matches, p.size(), false, &runs);
      emit_split(p, runs, Behavior::kIsolated, out);
    }
  }
};

struct DigitsStep : PreTokenizer::Step {
  bool individual = false;
  void apply(const std::vector<Piece>& in, std::string* buffer,
             std::vector<Piece>* out) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    std::vector<Run> runs;
    for (const Piece& p : in) {
      matches.clear();
      size_t pos = p.begin;
      while (pos < p.end) {
        size_t start = pos;
        char32_t c = unicode::next_utf8(*buffer, &pos);
        if (unicode::is_numeric(c)) matches.push_back({start - p.begin, pos - p.begin});
      }
      matches_to_runs(matches, p.size(), false, &runs);
      emit_split(p, runs, individual ? Behavior::kIsolated : Behavior::kContiguous, out);
    }
  }
};

bool optional_bool(const json& spec, const char* key, bool fallback, const Location& where,
                   const std::string& path) {
  if (!spec.contains(key) || spec[key].is_null()) return fallback;
  if (!spec[key].is_boolean()) {
    throw InputError({where.file, where.line, path + "." + key}, "expected true or false");
  }
  return spec[key].get<bool>();
}

void parse_step(const json& spec, const Location& where, const std::string& path,
                std::vector<std::unique_ptr<PreTokenizer::Step>>* steps) {
  Location here{where.file, where.line, path};
  if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string()) {
    throw InputError(here, "pre-tokenizer must be an object with a string \"type\"");
  }
  const std::string type = spec["type"].get<std::string>();
  if (type == "Sequence") {
    if (!spec.contains("pretokenizers") || !spec["pretokenizers"].is_array()) {
      throw InputError({where.file, where.line, path + ".pretokenizers"}, "expected a list");
    }
    const json& list = spec["pretokenizers"];
    for (size_t i = 0; i < list.size(); ++i) {
      parse_step(list[i], where, path + ".pretokenizers[" + std::to_string(i) + "]", steps);
    }
  } else if (type == "Split") {
    auto step = std::make_unique<SplitStep>();
    const json* pattern = spec.contains("pattern") ? &spec["pattern"] : nullptr;
    Location pattern_where{where.file, where.line, path + ".pattern"};
    if (pattern && pattern->is_object() && pattern->contains("Regex") &&
        (*pattern)["Regex"].is_string()) {
      step->regex =
          std::make_unique<Regex>((*pattern)["Regex"].get<std::string>(), false, pattern_where);
    } else if (pattern && pattern->is_object() && pattern->contains("String") &&
               (*pattern)["String"].is_string()) {
      step->regex =
          std::make_unique<Regex>((*pattern)["String"].get<std::string>(), true, pattern_where);
    } else {
      throw InputError(pattern_where, "expected {\"Regex\": ...} or {\"String\": ...}");
    }
    step->behavior = parse_behavior(spec, where, path);
    step->invert = optional_bool(spec, "invert", false, where, path);
    steps->push_back(std::move(step));
  } else if (type == "ByteLevel") {
    auto step = std::make_unique<ByteLevelStep>();
    step->add_prefix_space = optional_bool(spec, "add_prefix_space", true, where, path);
    if (optional_bool(spec, "use_regex", true, where, path)) {
      step->regex = std::make_unique<Regex>(kGpt2Pattern, false, here);
    }
    steps->push_back(std::move(step));
  } else if (type == "Digits") {
    auto step = std::make_unique<DigitsStep>();
    step->individual = optional_bool(spec, "individual_digits", false, where, path);
    steps->push_back(std::move(step));
  } else {
    throw InputError({where.file, where.line, path + ".type"},
                     "unsupported pre-tokenizer type '" + type +
                         "' (supported: Split, ByteLevel, Digits, Sequence)");
  }
}

}  // namespace

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

PreTokenizer PreTokenizer::from_json(const json& spec, const Location& where) {
  PreTokenizer result;
  // parse_step recurses once per Sequence level: bound the nesting (tokenizer.json is already
  // bounded when read, but a spec can also be built in code).
  if (json_depth(spec) > kMaxJsonDepth) {
    throw InputError({where.file, where.line, "pre_tokenizer"},
                     "nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  if (!spec.is_null()) parse_step(spec, where, "pre_tokenizer", &result.steps_);
  return result;
}

bool PreTokenizer::ends_with_byte_level() const {
  return !steps_.empty() && steps_.back()->is_byte_level();
}

void PreTokenizer::run(const char* text, size_t n, std::string* buffer,
                       std::vector<Piece>* out) const {
  buffer->assign(text, n);
  std::vector<Piece> current{Piece{0, n, 0, false}};
  std::vector<Piece> next;
  for (const auto& step : steps_) {
    next.clear();
    step->apply(current, buffer, &next);
    current.swap(next);
  }
  for (const Piece& p : current) {
    if (p.size() > 0) out->push_back(p);
  }
}

}  // namespace posttrain::core
