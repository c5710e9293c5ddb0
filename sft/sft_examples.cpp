#include "sft/sft_examples.h"

#include <nlohmann/json.hpp>

#include "common/jsonl.h"

namespace posttrain::sft {

using core::make_targets;
using core::parse_messages;
using core::render_chat;
using core::RenderedChat;

namespace {

Location at_field(const Location& where, const std::string& field) {
  Location at = where;
  at.field = field;
  return at;
}

// A prompt or completion field as messages: a string becomes one message of `role`.
std::vector<ChatMessage> as_messages(const nlohmann::json& v, const std::string& field,
                                     const std::string& role, const Location& where) {
  if (v.is_string()) return {ChatMessage{role, v.get<std::string>(), -1}};
  if (v.is_array()) return parse_messages(v, at_field(where, field));
  throw InputError(at_field(where, field),
                   std::string("expected a string or a list of messages, got ") + v.type_name());
}

}  // namespace

SftExample parse_sft_example(const nlohmann::json& row, const Location& where,
                             bool prompt_completion_as_text) {
  SftExample ex;
  ex.where = where;
  if (row.is_object() && row.contains("kept")) {
    // A synth output line: its `prompt` is the problem, already the first user turn of its
    // `messages`, so the two are not alternatives here.
    const auto& kept = row.at("kept");
    if (!kept.is_boolean()) {
      throw InputError(at_field(where, "kept"),
                       std::string("expected true or false, got ") + kept.type_name());
    }
    if (!kept.get<bool>()) {
      ex.not_kept = true;
      return ex;
    }
    if (row.contains("completion")) {
      throw InputError(where, "give either messages or prompt/completion, not both");
    }
    if (!row.contains("messages")) {
      throw InputError(at_field(where, "messages"),
                       "missing: a kept synth line holds its dialogue");
    }
    ex.messages = parse_messages(row.at("messages"), at_field(where, "messages"));
    if (ex.messages.empty()) throw InputError(at_field(where, "messages"), "empty list");
    return ex;
  }
  if (row.contains("messages")) {
    if (row.contains("prompt") || row.contains("completion")) {
      throw InputError(where, "give either messages or prompt/completion, not both");
    }
    ex.messages = parse_messages(row.at("messages"), at_field(where, "messages"));
    if (ex.messages.empty()) throw InputError(at_field(where, "messages"), "empty list");
    return ex;
  }
  if (!row.contains("prompt") && !row.contains("completion")) {
    throw InputError(where, "expected a 'messages' list or 'prompt' and 'completion'");
  }
  const auto& prompt = require_field(row, "prompt", where);
  const auto& completion = require_field(row, "completion", where);
  if (prompt_completion_as_text) {
    ex.is_text = true;
    ex.prompt = require_string(row, "prompt", where);
    ex.completion = require_string(row, "completion", where);
    return ex;
  }
  ex.messages = as_messages(prompt, "prompt", "user", where);
  auto tail = as_messages(completion, "completion", "assistant", where);
  ex.messages.insert(ex.messages.end(), tail.begin(), tail.end());
  return ex;
}

std::vector<SftExample> read_sft_examples(const std::string& path,
                                          bool prompt_completion_as_text) {
  JsonlReader reader(path);
  std::vector<SftExample> out;
  nlohmann::json row;
  while (reader.next(&row)) {
    out.push_back(parse_sft_example(row, reader.where(), prompt_completion_as_text));
  }
  return out;
}

SftTokens render_sft_example(const Tokenizer& tok, ChatFormat format, const SftExample& example) {
  if (example.not_kept) {
    throw InputError(at_field(example.where, "kept"),
                     "false: this synth line failed its checks and holds nothing to train on");
  }
  if (!example.is_text) {
    RenderedChat chat = render_chat(tok, example.messages, format);
    std::vector<uint8_t> mask = chat.sft_target_mask();
    return {std::move(chat.ids), std::move(mask)};
  }
  std::vector<int64_t> ids = tok.encode(example.prompt, /*add_special_tokens=*/true);
  std::vector<uint8_t> mask(ids.size(), 0);
  std::vector<int64_t> tail = tok.encode(example.completion, /*add_special_tokens=*/false);
  const auto eos = tok.eos_ids();
  if (eos.empty()) throw UsageError("text examples need a tokenizer with an end-of-sequence token");
  tail.push_back(eos.front());
  ids.insert(ids.end(), tail.begin(), tail.end());
  mask.resize(ids.size(), 1);
  return {std::move(ids), std::move(mask)};
}

TokenizedExample tokenize_sft_example(const Tokenizer& tok, ChatFormat format,
                                      const SftExample& example) {
  SftTokens t = render_sft_example(tok, format, example);
  return make_targets(std::move(t.ids), t.target_mask);
}

}  // namespace posttrain::sft
