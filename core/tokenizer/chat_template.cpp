// See chat_template.h. Rendering builds the whole chat text (exactly what the Jinja template in
// jinja_chat_template() prints) as labelled byte regions, tokenises it in one pass as
// transformers does (so tokens that cross a region boundary come out the same), then labels
// each token from the regions its byte span overlaps: a token touching content is content.
#include "core/tokenizer/chat_template.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/tokenizer/unicode.h"

namespace posttrain::core {

using nlohmann::json;

namespace {

struct Region {
  size_t begin, end;
  TokenLabel label;
  bool turn_end = false;
};

class ChatBuilder {
 public:
  explicit ChatBuilder(const Tokenizer& tok) : tok_(tok) {}

  void special(const std::string& token, const TokenLabel& label, bool turn_end = false) {
    if (!tok_.token_id(token)) {
      throw UsageError("this tokenizer has no " + token + " token; pick another --chat-template");
    }
    add(token, label, turn_end);
  }
  void add(const std::string& text, const TokenLabel& label, bool turn_end = false) {
    if (text.empty()) return;
    regions_.push_back({text_.size(), text_.size() + text.size(), label, turn_end});
    text_ += text;
  }

  RenderedChat finish() const {
    std::vector<std::pair<size_t, size_t>> spans;
    RenderedChat out;
    out.ids = tok_.encode_with_offsets(text_, false, &spans);
    out.labels.resize(out.ids.size());
    if (regions_.empty()) return out;
    size_t r = 0;  // first region that may overlap the current token (spans are increasing)
    for (size_t i = 0; i < out.ids.size(); ++i) {
      size_t b = spans[i].first, e = std::max(spans[i].second, spans[i].first + 1);
      while (r + 1 < regions_.size() && regions_[r].end <= b) ++r;
      const Region* chosen = &regions_[r];
      for (size_t k = r; k < regions_.size() && regions_[k].begin < e; ++k) {
        if (regions_[k].label.is_content) {
          chosen = &regions_[k];
          break;
        }
      }
      out.labels[i] = chosen->label;
      out.labels[i].is_turn_end =
          chosen->turn_end && b == chosen->begin && spans[i].second == chosen->end;
    }
    return out;
  }

 private:
  const Tokenizer& tok_;
  std::string text_;
  std::vector<Region> regions_;
};

TokenLabel label_for(int32_t message, Role role, bool content, uint8_t weight) {
  TokenLabel l;
  l.message = message;
  l.role = role;
  l.is_content = content;
  l.weight = weight;
  return l;
}

const char kPythonTag[] = "<|python_tag|>";

}  // namespace

Role role_from_name(const std::string& role) {
  if (role == "system") return Role::kSystem;
  if (role == "user") return Role::kUser;
  if (role == "assistant") return Role::kAssistant;
  if (role == "ipython") return Role::kIpython;
  if (role == "tool") return Role::kTool;
  return Role::kOther;
}

std::vector<ChatMessage> parse_messages(const json& list, const Location& where) {
  const std::string name = where.field.empty() ? "messages" : where.field;
  auto at = [&](const std::string& field) { return Location{where.file, where.line, field}; };
  if (!list.is_array()) throw InputError(at(name), "expected a list of messages");
  if (list.empty()) throw InputError(at(name), "expected at least one message");
  std::vector<ChatMessage> out;
  out.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string prefix = name + "[" + std::to_string(i) + "]";
    const json& m = list[i];
    if (!m.is_object()) throw InputError(at(prefix), "expected an object with role and content");
    ChatMessage msg;
    if (!m.contains("role") || !m["role"].is_string() || m["role"].get<std::string>().empty()) {
      throw InputError(at(prefix + ".role"), "expected a non-empty string");
    }
    msg.role = m["role"].get<std::string>();
    if (!m.contains("content") || !m["content"].is_string()) {
      throw InputError(at(prefix + ".content"), "expected a string");
    }
    msg.content = m["content"].get<std::string>();
    if (m.contains("weight") && !m["weight"].is_null()) {
      const json& w = m["weight"];
      if (w.is_boolean()) {
        msg.weight = w.get<bool>() ? 1 : 0;
      } else if (w.is_number_integer() && (w.get<int64_t>() == 0 || w.get<int64_t>() == 1)) {
        msg.weight = static_cast<int>(w.get<int64_t>());
      } else {
        throw InputError(at(prefix + ".weight"), "expected 0 or 1");
      }
    }
    out.push_back(std::move(msg));
  }
  return out;
}

std::vector<uint8_t> RenderedChat::sft_target_mask() const {
  std::vector<uint8_t> mask(labels.size(), 0);
  for (size_t i = 0; i < labels.size(); ++i) {
    const TokenLabel& l = labels[i];
    if (l.message >= 0 && l.role == Role::kAssistant && l.weight == 1 &&
        (l.is_content || l.is_turn_end)) {
      mask[i] = 1;
    }
  }
  return mask;
}

std::vector<uint8_t> RenderedChat::content_mask(int32_t message) const {
  std::vector<uint8_t> mask(labels.size(), 0);
  for (size_t i = 0; i < labels.size(); ++i) {
    mask[i] = labels[i].message == message && labels[i].is_content ? 1 : 0;
  }
  return mask;
}

RenderedChat render_chat(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                         ChatFormat format, bool add_generation_prompt) {
  ChatBuilder b(tok);
  const TokenLabel outside = label_for(-1, Role::kOther, false, 0);
  if (format == ChatFormat::kLlama3) {
    b.special("<|begin_of_text|>", outside);
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const Role role = role_from_name(m.role);
    const uint8_t weight =
        m.weight >= 0 ? static_cast<uint8_t>(m.weight) : (role == Role::kAssistant ? 1 : 0);
    const auto index = static_cast<int32_t>(i);
    const TokenLabel fmt = label_for(index, role, false, weight);
    const TokenLabel content = label_for(index, role, true, weight);
    if (format == ChatFormat::kLlama3) {
      std::string text = tok.normalize(unicode::python_strip(m.content));
      b.special("<|start_header_id|>", fmt);
      b.add(tok.normalize(m.role), fmt);
      b.special("<|end_header_id|>", fmt);
      b.add("\n\n", fmt);
      b.add(text, content);
      bool tool_call = m.role == "assistant" && text.rfind(kPythonTag, 0) == 0;
      b.special(tool_call ? "<|eom_id|>" : "<|eot_id|>", fmt, true);
    } else {
      b.special("<|im_start|>", fmt);
      b.add(tok.normalize(m.role) + "\n", fmt);
      b.add(tok.normalize(m.content), content);
      b.special("<|im_end|>", fmt, true);
      b.add("\n", fmt);
    }
  }
  if (add_generation_prompt) {
    const TokenLabel prompt = label_for(-1, Role::kAssistant, false, 0);
    if (format == ChatFormat::kLlama3) {
      b.special("<|start_header_id|>", prompt);
      b.add("assistant", prompt);
      b.special("<|end_header_id|>", prompt);
      b.add("\n\n", prompt);
    } else {
      b.special("<|im_start|>", prompt);
      b.add("assistant\n", prompt);
    }
  }
  return b.finish();
}

std::string jinja_chat_template(ChatFormat format) {
  if (format == ChatFormat::kLlama3) {
    return R"({{- '<|begin_of_text|>' }}
{%- for message in messages %}
{%- set content = message['content'] | trim %}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + content }}
{%- if message['role'] == 'assistant' and content.startswith('<|python_tag|>') %}
{{- '<|eom_id|>' }}
{%- else %}
{{- '<|eot_id|>' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %})";
  }
  return R"({%- for message in messages %}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\n' }}
{%- endif %})";
}

}  // namespace posttrain::core
