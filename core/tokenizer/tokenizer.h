// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json (Llama 3, Qwen, SmolLM,
// GPT-2 families). Encoding: added/special tokens are cut out of the text first; each remaining
// piece is NFC-normalised when the file asks for it, split by the pre-tokenizers (Split regex via
// PCRE2 with Unicode classes, ByteLevel, Digits, Sequence), mapped to byte-level symbols and
// merged by rank. Decoding maps tokens back to bytes, so encode→decode is byte-exact on any
// UTF-8 text. A Tokenizer is cheap to copy: copies share one immutable implementation; only the
// chat format is per copy.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace posttrain::core {

// The chat layouts we render (see chat_template.h).
enum class ChatFormat { kLlama3, kChatML };

// "llama3" | "chatml"; anything else throws UsageError.
ChatFormat parse_chat_format(const std::string& name);
// The inverse: "llama3" | "chatml".
std::string chat_format_name(ChatFormat format);

class TokenizerImpl;

class Tokenizer {
 public:
  // Reads a tokenizer.json. Throws IoError when unreadable, InputError naming the file and the
  // field of any malformed or unsupported part (model type, normaliser, pre-tokenizer, ...).
  static Tokenizer from_file(const std::string& tokenizer_json_path);
  // Reads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json (bos/eos/pad token
  // names, chat template choice). `dir` may also name a tokenizer.json file directly.
  static Tokenizer load_dir(const std::string& dir);
  // Built-in tokenizer for tiny models: ids 0..255 are the bytes (no merges), then the Llama 3
  // special tokens (<|begin_of_text|> = 256, <|end_of_text|> = 257, ...). BOS is prepended.
  static Tokenizer byte_level();

  // Token ids of `text`. add_special_tokens: apply the post-processor (prepend BOS when the
  // tokenizer's TemplateProcessing does). Special-token strings inside `text` become their ids.
  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens = true) const;
  // encode() plus each token's [begin, end) byte range in `text` (BOS/EOS get empty ranges).
  // Exact when `text` is already in normalize()'s form; otherwise a token of a changed segment
  // gets the whole segment's range.
  std::vector<int64_t> encode_with_offsets(const std::string& text, bool add_special_tokens,
                                           std::vector<std::pair<size_t, size_t>>* offsets) const;
  // The tokenizer's normaliser (NFC for Qwen-style files, identity otherwise).
  std::string normalize(const std::string& text) const;
  // Text of `ids` (byte-exact inverse of encode for valid UTF-8 input). Ids out of range throw
  // InputError. A token sequence that ends inside a UTF-8 character yields U+FFFD for the broken
  // bytes, as Hugging Face does.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const;

  int64_t vocab_size() const;  // highest id + 1
  std::optional<int64_t> token_id(const std::string& token) const;
  // The token string of `id` (byte-level symbols for BPE tokens), nullopt when out of range.
  std::optional<std::string> id_to_token(int64_t id) const;
  // True for added tokens marked special (<|eot_id|>, <|im_end|>, ...).
  bool is_special(int64_t id) const;
  std::optional<int64_t> bos_id() const;
  std::vector<int64_t> eos_ids() const;  // may be empty
  std::optional<int64_t> pad_id() const;

  // Chosen from tokenizer_config.json's chat_template or the special tokens present
  // (<|start_header_id|> → Llama 3, <|im_start|> → ChatML); overridable per copy.
  ChatFormat chat_format() const { return chat_format_; }
  void set_chat_format(ChatFormat f) { chat_format_ = f; }

  // Writes DIR/tokenizer.json (the loaded file, re-serialised) and DIR/tokenizer_config.json
  // (a Jinja chat_template for chat_format(), bos/eos/pad tokens) so transformers'
  // AutoTokenizer loads the folder. Creates DIR when missing. Throws IoError on failure.
  void save_dir(const std::string& dir) const;

  // A stable digest of the vocabulary, merges, pre-tokenisation and chat format, for caches
  // keyed by "which tokenizer" (e.g. reference log-probs).
  std::string fingerprint() const;

 private:
  Tokenizer(std::shared_ptr<const TokenizerImpl> impl, ChatFormat format);
  std::shared_ptr<const TokenizerImpl> impl_;
  ChatFormat chat_format_ = ChatFormat::kLlama3;
};

}  // namespace posttrain::core
