// Pre-tokenisation of a tokenizer.json: the text between added tokens is cut into pieces
// ("words") that BPE then merges independently. Supported steps, as in Hugging Face tokenizers:
// Split (a regex with Unicode classes, compiled once by PCRE2 with UTF + UCP and JIT, or a literal
// string; any split behaviour; invert), ByteLevel (optional prefix space, optional GPT-2 regex),
// Digits (individual or grouped) and Sequence. A byte-level pipeline must end with ByteLevel; the
// byte → character mapping itself is applied by the BPE model (bpe.h).
#pragma once

#include <cstddef>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "common/error.h"

namespace posttrain::core {

// A piece of pre-tokenised text: bytes [begin, end) of the working buffer that
// PreTokenizer::run fills. It covers bytes [src_begin, src_begin + size() - prefixed) of the
// input, plus a leading space that ByteLevel(add_prefix_space) invented when `prefixed`.
struct Piece {
  size_t begin = 0, end = 0;
  size_t src_begin = 0;
  bool prefixed = false;
  size_t size() const { return end - begin; }
};

// A compiled PCRE2 pattern (UTF, UCP, JIT when available). Thread-safe: match scratch space is
// per thread.
class Regex {
 public:
  // Throws InputError at `where` when the pattern does not compile.
  Regex(const std::string& pattern, bool literal, const Location& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Appends [begin, end) of every match in s[0, n), left to right, as onig's find_iter does
  // (an empty match is reported and the search moves on by one character). `s` must be valid
  // UTF-8 (not re-checked).
  void find_all(const char* s, size_t n, std::vector<std::pair<size_t, size_t>>* out) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*
};

// The pre-tokenizer of one tokenizer.json (possibly empty: the whole segment is one piece).
class PreTokenizer {
 public:
  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Parses the "pre_tokenizer" object; unsupported types or options throw InputError naming
  // `where` plus the JSON path of the offending field.
  static PreTokenizer from_json(const nlohmann::json& spec, const Location& where);
  // True when the last step is ByteLevel (required for byte-level BPE).
  bool ends_with_byte_level() const;
  // Cuts text[0, n) (valid UTF-8) into pieces, appended to *out; *buffer receives the bytes the
  // pieces point into (the text, plus any invented prefix spaces).
  void run(const char* text, size_t n, std::string* buffer, std::vector<Piece>* out) const;

  struct Step;  // one pre-tokenisation step (defined in the .cpp)

 private:
  std::vector<std::unique_ptr<Step>> steps_;
};

}  // namespace posttrain::core
