// The shared, immutable state behind a Tokenizer (internal to core/tokenizer). Encoding order,
// as in Hugging Face tokenizers: (1) cut out added tokens that match the raw text, (2) NFC the
// rest when the file asks, (3) cut out added tokens that match normalised text, (4) pre-tokenise,
// (5) BPE each piece, (6) the post-processor's BOS/EOS.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/tokenizer/bpe.h"
#include "core/tokenizer/pre_tokenizer.h"
#include "core/tokenizer/tokenizer.h"

namespace posttrain::core {

// Leftmost-longest matcher over a set of byte strings (the added tokens).
class TokenTrie {
 public:
  void insert(const std::string& s, int32_t value);
  bool empty() const { return nodes_.size() <= 1; }
  // Finds the leftmost, then longest, match starting at or after `from`. Returns false when
  // none; else sets *begin, *end and *value.
  bool find(const std::string& text, size_t from, size_t* begin, size_t* end, int32_t* value) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;
    int32_t value = -1;
  };
  std::vector<Node> nodes_{Node{}};
  std::array<bool, 256> first_byte_{};
};

struct AddedToken {
  int64_t id = 0;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

class TokenizerImpl {
 public:
  // Parses a tokenizer.json document; `source` names it in errors.
  TokenizerImpl(nlohmann::json doc, const std::string& source);

  // Encodes `text`; when `spans` is given, appends each token's [begin, end) byte range in
  // `text` (exact when `text` is already in the normaliser's form).
  void encode(const std::string& text, bool add_special_tokens, std::vector<int64_t>* ids,
              std::vector<std::pair<size_t, size_t>>* spans) const;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const;
  // The normaliser applied to text outside raw-matched added tokens (NFC or identity).
  std::string normalize(const std::string& text) const;

  nlohmann::json doc;     // the tokenizer.json as loaded
  nlohmann::json config;  // tokenizer_config.json, null when absent
  std::string source;
  int64_t vocab_size = 0;
  std::vector<AddedToken> added;
  std::unordered_map<std::string, size_t> added_by_content;
  std::unordered_map<int64_t, size_t> added_by_id;
  std::vector<int64_t> prefix_ids, suffix_ids;  // post-processor, single sequence
  ChatFormat detected_format = ChatFormat::kLlama3;

  BpeModel model;

 private:
  void parse_added_tokens(const nlohmann::json& list);
  void parse_normalizer(const nlohmann::json& spec, const std::string& path);
  void parse_post_processor(const nlohmann::json& spec, const std::string& path);
  void parse_decoder(const nlohmann::json& spec);
  // Splits `text` on the added tokens of `trie` (lstrip/rstrip honoured); calls
  // emit(begin, end, added index or -1) for consecutive ranges covering text.
  template <typename Emit>
  void split_added(const std::string& text, const TokenTrie& trie, Emit emit) const;
  // Pre-tokenises and merges text[0, n); spans are shifted by `offset`.
  void encode_plain(const char* text, size_t n, size_t offset, std::vector<int64_t>* ids,
                    std::vector<std::pair<size_t, size_t>>* spans) const;

  bool nfc_ = false;
  PreTokenizer pre_tokenizer_;
  TokenTrie raw_trie_, normalized_trie_;
  std::vector<std::string> decoded_;  // bytes each id decodes to
  std::vector<uint8_t> special_;      // 1 for special added tokens
};

}  // namespace posttrain::core
