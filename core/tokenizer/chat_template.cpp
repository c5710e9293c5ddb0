// See chat_template.h. Rendering builds the whole chat text (exactly what the Jinja template in
// jinja_chat_template() prints) as labelled byte regions, tokenises it in one pass as
// transformers does (so tokens that cross a region boundary come out the same), then labels
// each token from the regions its byte span overlaps: a token touching content is content.
#include "core/tokenizer/chat_template.h"

#include <algorithm>
#include <functional>
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

// Python's json.dumps(v, ensure_ascii=False, sort_keys=True): ", " and ": " separators. nlohmann
// objects iterate in byte order of the UTF-8 keys, which is Python's code-point order.
std::string python_json(const json& v) {
  std::string out;
  if (v.is_object()) {
    out = "{";
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it != v.begin()) out += ", ";
      out += json(it.key()).dump() + ": " + python_json(it.value());
    }
    return out + "}";
  }
  if (v.is_array()) {
    out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + python_json(v[i]);
    return out + "]";
  }
  return v.dump();
}

// A value printed into a call: a string as itself, anything else as JSON.
std::string call_value(const json& v) { return v.is_string() ? v.get<std::string>() : python_json(v); }

// Meta's built-in tools: called after <|python_tag|> and ended by <|eom_id|>.
bool is_builtin_tool(const std::string& name) {
  return name == "brave_search" || name == "wolfram_alpha" || name == "code_interpreter";
}

// The text of one Llama 3.1 call (see chat_template.h).
std::string llama3_call_text(const ChatToolCall& call) {
  const json args = json::parse(call.arguments);
  if (!is_builtin_tool(call.name)) {
    return "{\"name\": " + json(call.name).dump() + ", \"parameters\": " +
           (call.raw_arguments.empty() ? python_json(args) : call.raw_arguments) + "}";
  }
  if (call.name == "code_interpreter" && args.contains("code")) {
    return kPythonTag + call_value(args["code"]);
  }
  std::string text = kPythonTag + call.name + ".call(";
  for (auto it = args.begin(); it != args.end(); ++it) {
    if (it != args.begin()) text += ", ";
    text += it.key() + "=\"" + call_value(it.value()) + "\"";
  }
  return text + ")";
}

// The text of one ChatML call block.
std::string chatml_call_text(const ChatToolCall& call) {
  const std::string args =
      call.raw_arguments.empty() ? python_json(json::parse(call.arguments)) : call.raw_arguments;
  return "<tool_call>\n{\"name\": " + json(call.name).dump() + ", \"arguments\": " + args +
         "}\n</tool_call>";
}

}  // namespace

Role role_from_name(const std::string& role) {
  if (role == "system") return Role::kSystem;
  if (role == "user") return Role::kUser;
  if (role == "assistant") return Role::kAssistant;
  if (role == "ipython") return Role::kIpython;
  if (role == "tool") return Role::kTool;
  return Role::kOther;
}

namespace {

// One `tool_calls` entry: {"type": "function", "function": {"name", "arguments"}} or the same
// without the wrapper; arguments an object or a string holding one (OpenAI's spelling).
ChatToolCall parse_tool_call(const json& call, const std::string& prefix,
                             const std::function<Location(const std::string&)>& at) {
  if (!call.is_object()) throw InputError(at(prefix), "expected an object with a function");
  std::string path = prefix;
  const json* f = &call;
  if (call.contains("function")) {
    path += ".function";
    f = &call["function"];
    if (!f->is_object()) throw InputError(at(path), "expected an object with name and arguments");
  }
  ChatToolCall out;
  if (!f->contains("name") || !(*f)["name"].is_string() || (*f)["name"].get<std::string>().empty())
    throw InputError(at(path + ".name"), "expected a non-empty string");
  out.name = (*f)["name"].get<std::string>();
  json args = json::object();
  if (f->contains("arguments") && !(*f)["arguments"].is_null()) {
    const json& a = (*f)["arguments"];
    if (a.is_string()) {
      out.raw_arguments = a.get<std::string>();
      try {
        args = json::parse(out.raw_arguments);
      } catch (const json::parse_error&) {
        throw InputError(at(path + ".arguments"), "a string that is not JSON");
      }
    } else {
      args = a;
    }
    if (!args.is_object()) throw InputError(at(path + ".arguments"), "expected a JSON object");
  }
  out.arguments = args.dump();
  return out;
}

}  // namespace

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
    if (role_from_name(msg.role) == Role::kOther) {
      throw InputError(at(prefix + ".role"), "unknown role '" + msg.role +
                                                 "' (expected system, user, assistant, tool "
                                                 "or ipython)");
    }
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      const json& calls = m["tool_calls"];
      if (msg.role != "assistant")
        throw InputError(at(prefix + ".tool_calls"), "only assistant messages make tool calls");
      if (!calls.is_array()) throw InputError(at(prefix + ".tool_calls"), "expected a list");
      for (size_t j = 0; j < calls.size(); ++j) {
        msg.tool_calls.push_back(
            parse_tool_call(calls[j], prefix + ".tool_calls[" + std::to_string(j) + "]", at));
      }
    }
    // content null is OpenAI's spelling for "no text" (an assistant turn that only calls).
    if (!m.contains("content") && msg.tool_calls.empty()) {
      throw InputError(at(prefix + ".content"), "expected a string or null");
    }
    if (m.contains("content") && !m["content"].is_null()) {
      if (!m["content"].is_string())
        throw InputError(at(prefix + ".content"), "expected a string or null");
      msg.content = m["content"].get<std::string>();
    }
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
      if (m.tool_calls.size() > 1) {
        throw InputError(Location{"", 0, "messages[" + std::to_string(i) + "].tool_calls"},
                         "Llama 3 takes one tool call per assistant message; split the calls "
                         "into consecutive messages");
      }
      const std::string header = role == Role::kTool ? "ipython" : m.role;
      std::string text = tok.normalize(unicode::python_strip(m.content));
      bool eom = role == Role::kAssistant && text.rfind(kPythonTag, 0) == 0;
      b.special("<|start_header_id|>", fmt);
      b.add(tok.normalize(header), fmt);
      b.special("<|end_header_id|>", fmt);
      b.add("\n\n", fmt);
      b.add(text, content);
      for (const ChatToolCall& call : m.tool_calls) {
        b.add(tok.normalize(llama3_call_text(call)), content);
        eom = is_builtin_tool(call.name);
      }
      b.special(eom ? "<|eom_id|>" : "<|eot_id|>", fmt, true);
    } else {
      const std::string header = role == Role::kIpython ? "tool" : m.role;
      b.special("<|im_start|>", fmt);
      b.add(tok.normalize(header) + "\n", fmt);
      b.add(tok.normalize(m.content), content);
      for (size_t j = 0; j < m.tool_calls.size(); ++j) {
        if (j > 0 || !m.content.empty()) b.add("\n", content);
        b.add(tok.normalize(chatml_call_text(m.tool_calls[j])), content);
      }
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

// Both templates build each message's text first (content, then its calls), then print it inside
// {% generation %} when SFT would train on it; keep them in step with render_chat.
std::string jinja_chat_template(ChatFormat format) {
  if (format == ChatFormat::kLlama3) {
    return R"JINJA({{- '<|begin_of_text|>' }}
{%- for message in messages %}
{%- set role = 'ipython' if message['role'] == 'tool' else message['role'] %}
{%- set ns = namespace(text=(message['content'] or '') | trim, eom=false) %}
{%- set ns.eom = message['role'] == 'assistant' and ns.text.startswith('<|python_tag|>') %}
{%- for call in message['tool_calls'] or [] %}
{%- set f = call['function'] if call['function'] is defined else call %}
{%- set args = f['arguments'] if f['arguments'] is defined and f['arguments'] is not none else {} %}
{%- set ns.eom = f['name'] in ['brave_search', 'wolfram_alpha', 'code_interpreter'] %}
{%- if not ns.eom %}
{%- set ns.text = ns.text + '{"name": ' + f['name'] | tojson + ', "parameters": ' + (args if args is string else args | tojson(sort_keys=True)) + '}' %}
{%- elif f['name'] == 'code_interpreter' and args['code'] is defined %}
{%- set ns.text = ns.text + '<|python_tag|>' + (args['code'] if args['code'] is string else args['code'] | tojson(sort_keys=True)) %}
{%- else %}
{%- set ns.text = ns.text + '<|python_tag|>' + f['name'] + '.call(' %}
{%- for key, value in args | dictsort(true) %}
{%- set ns.text = ns.text + (', ' if not loop.first else '') + key + '="' + (value if value is string else value | tojson(sort_keys=True)) + '"' %}
{%- endfor %}
{%- set ns.text = ns.text + ')' %}
{%- endif %}
{%- endfor %}
{{- '<|start_header_id|>' + role + '<|end_header_id|>\n\n' }}
{%- if message['role'] == 'assistant' and not (message['weight'] is defined and message['weight'] is not none and message['weight'] == 0) %}
{%- generation %}
{{- ns.text + ('<|eom_id|>' if ns.eom else '<|eot_id|>') }}
{%- endgeneration %}
{%- else %}
{{- ns.text + ('<|eom_id|>' if ns.eom else '<|eot_id|>') }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %})JINJA";
  }
  return R"JINJA({%- for message in messages %}
{%- set role = 'tool' if message['role'] == 'ipython' else message['role'] %}
{%- set ns = namespace(text=message['content'] or '') %}
{%- for call in message['tool_calls'] or [] %}
{%- set f = call['function'] if call['function'] is defined else call %}
{%- set args = f['arguments'] if f['arguments'] is defined and f['arguments'] is not none else {} %}
{%- set ns.text = ns.text + ('\n' if ns.text else '') + '<tool_call>\n{"name": ' + f['name'] | tojson + ', "arguments": ' + (args if args is string else args | tojson(sort_keys=True)) + '}\n</tool_call>' %}
{%- endfor %}
{{- '<|im_start|>' + role + '\n' }}
{%- if message['role'] == 'assistant' and not (message['weight'] is defined and message['weight'] is not none and message['weight'] == 0) %}
{%- generation %}
{{- ns.text + '<|im_end|>' }}
{%- endgeneration %}
{%- else %}
{{- ns.text + '<|im_end|>' }}
{%- endif %}
{{- '\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\n' }}
{%- endif %})JINJA";
}

}  // namespace posttrain::core
