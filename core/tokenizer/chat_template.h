// Chat rendering for the Llama 3 header format (with the Llama 3.1 tool-call tokens) and ChatML.
// Rendering returns the token ids plus a label per token: which message it belongs to, the
// message's role, whether it is content or formatting, and the message's SFT weight, so a loss
// can train on weighted assistant content (plus the turn's end token) and DPO can mask
// formatting. The ids equal what transformers' apply_chat_template(tokenize=True) gives with the
// template Tokenizer::save_dir writes.
//
// Llama 3:  <|begin_of_text|> then per message
//           <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>
//           (an assistant message whose content starts with <|python_tag|> is a tool call and
//           ends with <|eom_id|>; tool results use role "ipython"). Content is stripped of
//           leading/trailing whitespace, as Meta's template does.
// ChatML:   per message <|im_start|>ROLE\nCONTENT<|im_end|>\n
// Generation prompt: the header of an assistant turn (<|start_header_id|>assistant
// <|end_header_id|>\n\n, or <|im_start|>assistant\n).
// Special-token strings inside content are matched as special tokens, as HF's tokenizer does.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "core/tokenizer/tokenizer.h"

namespace posttrain::core {

struct ChatMessage {
  std::string role;
  std::string content;
  int weight = -1;  // -1: default = 1 for assistant, 0 otherwise
};

// Parses a JSON list of {"role", "content", optional "weight" 0|1}. Errors name `where` plus
// "messages[i].field" (where.field, when set, is used as the list's name instead of "messages").
std::vector<ChatMessage> parse_messages(const nlohmann::json& list, const Location& where);

enum class Role : uint8_t { kSystem, kUser, kAssistant, kIpython, kTool, kOther };
Role role_from_name(const std::string& role);

struct TokenLabel {
  int32_t message = -1;  // index into the messages; -1: outside any message (BOS, gen. prompt)
  Role role = Role::kOther;
  bool is_content = false;   // false: formatting (headers, separators, end tokens)
  uint8_t weight = 0;        // the message's resolved weight (0 or 1)
  bool is_turn_end = false;  // the message's end token (<|eot_id|>, <|eom_id|>, <|im_end|>)
};

struct RenderedChat {
  std::vector<int64_t> ids;
  std::vector<TokenLabel> labels;  // same length as ids

  // 1 on tokens SFT trains on: content of assistant messages with weight 1 plus that turn's end
  // token (<|eot_id|> / <|eom_id|> / <|im_end|>).
  std::vector<uint8_t> sft_target_mask() const;
  // 1 on content tokens of the given message only (formatting masked): what DPO uses.
  std::vector<uint8_t> content_mask(int32_t message) const;
};

// Renders `messages` in `format`. Throws UsageError when the tokenizer lacks the format's
// special tokens.
RenderedChat render_chat(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                         ChatFormat format, bool add_generation_prompt = false);

// The Jinja chat_template string for tokenizer_config.json that reproduces render_chat's ids in
// transformers' apply_chat_template. `bos_token` is emitted by the template for Llama 3.
std::string jinja_chat_template(ChatFormat format);

}  // namespace posttrain::core
