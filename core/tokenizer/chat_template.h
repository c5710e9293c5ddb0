// Chat rendering for the Llama 3 header format (with the Llama 3.1 tool-call tokens) and ChatML.
// Rendering returns the token ids plus a label per token: which message it belongs to, the
// message's role, whether it is content or formatting, and the message's SFT weight, so a loss
// can train on weighted assistant content (plus the turn's end token) and DPO can mask
// formatting. The ids equal what transformers' apply_chat_template(tokenize=True) gives with the
// template Tokenizer::save_dir writes.
//
// Llama 3:  <|begin_of_text|> then per message
//           <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>
//           Content is stripped of leading/trailing whitespace, as Meta's template does. Tool
//           calls follow Meta's Llama 3.1 format: an assistant message whose content starts with
//           <|python_tag|>, or whose `tool_calls` names a built-in tool (brave_search,
//           wolfram_alpha: <|python_tag|>NAME.call(k="v", ...); code_interpreter:
//           <|python_tag|>CODE), ends with <|eom_id|>; a custom tool call is the JSON
//           {"name": N, "parameters": {...}} ended by <|eot_id|>. One call per message. Role
//           "tool" is rendered "ipython" (Llama 3's name for tool results).
// ChatML:   per message <|im_start|>ROLE\nCONTENT<|im_end|>\n; tool calls follow the content as
//           <tool_call>\n{"name": N, "arguments": {...}}\n</tool_call> blocks (Qwen 2.5 /
//           Hermes), one per call, "\n"-separated; role "ipython" is rendered "tool".
// Tool-call JSON is printed as Python's json.dumps(sort_keys=True) prints it, which is what the
// saved template's `tojson(sort_keys=True)` gives in transformers.
// Generation prompt: the header of an assistant turn (<|start_header_id|>assistant
// <|end_header_id|>\n\n, or <|im_start|>assistant\n).
// Special-token strings inside content are matched as special tokens, as HF's tokenizer does.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "core/tokenizer/tokenizer.h"

namespace posttrain::core {

// One function call of an assistant message (OpenAI / TRL `tool_calls` entry).
struct ChatToolCall {
  std::string name;
  std::string arguments;      // a JSON object, compact nlohmann dump (keys sorted)
  std::string raw_arguments;  // the string as given when arguments came as a string, else ""
};

struct ChatMessage {
  ChatMessage() = default;
  ChatMessage(std::string role_, std::string content_, int weight_ = -1)
      : role(std::move(role_)), content(std::move(content_)), weight(weight_) {}

  std::string role;
  std::string content;  // "" for a null content
  int weight = -1;      // -1: default = 1 for assistant, 0 otherwise
  std::vector<ChatToolCall> tool_calls;  // assistant only
};

// Parses a JSON list of {"role", "content" (string or null), optional "weight" 0|1, optional
// "tool_calls" (assistant only): [{"type": "function", "function": {"name", "arguments"}}]
// with the `function` wrapper optional and arguments an object or a string holding one}. Roles:
// system, user, assistant, tool, ipython; anything else is an error (a typo must not be
// silently dropped or mis-trained). Other keys (tool_call_id, name) are ignored. Errors name
// `where` plus "messages[i].field" (where.field, when set, is used as the list's name).
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
// special tokens; InputError (field "messages[i].tool_calls") for a Llama 3 message with more
// than one tool call.
RenderedChat render_chat(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                         ChatFormat format, bool add_generation_prompt = false);

// The Jinja chat_template string for tokenizer_config.json that reproduces render_chat's ids in
// transformers' apply_chat_template. Its {% generation %} blocks cover exactly the tokens of
// RenderedChat::sft_target_mask (assistant content with weight other than 0, plus the turn's end
// token), so transformers' return_assistant_tokens_mask and TRL's assistant-only loss see
// the same targets as our SFT.
std::string jinja_chat_template(ChatFormat format);

}  // namespace posttrain::core
