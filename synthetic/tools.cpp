// Tool-call parsing, the three tools, and the executor that interleaves ipython results.
#include "synthetic/tools.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/json_depth.h"
#include "synthetic/calculator.h"
#include "synthetic/math_check.h"

namespace posttrain::synthetic {

namespace {

const char kPythonTag[] = "<|python_tag|>";
const char kEom[] = "<|eom_id|>";
const char kEot[] = "<|eot_id|>";

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

std::string strip_suffix(std::string s, const std::string& suffix) {
  s = trim(s);
  if (s.size() >= suffix.size() &&
      s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0) {
    s.erase(s.size() - suffix.size());
  }
  return trim(s);
}

std::string canonical_tool(const std::string& name) {
  if (name == "wolfram_alpha" || name == "calculator") return "calculator";
  if (name == "brave_search" || name == "lookup" || name == "search") return "lookup";
  if (name == "code_interpreter" || name == "python") return "python";
  return name;
}

[[noreturn]] void bad_call(const std::string& what) {
  throw InputError(Location{"", 0, "tool_call"}, what);
}

// key="value", key='value', key=123 ... up to the closing ')'.
std::map<std::string, std::string> parse_kwargs(const std::string& s) {
  std::map<std::string, std::string> args;
  size_t i = 0;
  auto skip = [&] {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  };
  for (;;) {
    skip();
    if (i >= s.size()) return args;
    size_t k = i;
    while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_')) ++i;
    std::string key = s.substr(k, i - k);
    skip();
    if (key.empty() || i >= s.size() || s[i] != '=') bad_call("expected key=value in the call");
    ++i;
    skip();
    std::string value;
    if (i < s.size() && (s[i] == '"' || s[i] == '\'')) {
      char q = s[i++];
      for (; i < s.size() && s[i] != q; ++i) {
        if (s[i] == '\\' && i + 1 < s.size()) {
          char e = s[++i];
          value += e == 'n' ? '\n' : e == 't' ? '\t' : e;
        } else {
          value += s[i];
        }
      }
      if (i >= s.size()) bad_call("unterminated string in the call");
      ++i;
    } else {
      size_t v = i;
      while (i < s.size() && s[i] != ',') ++i;
      value = trim(s.substr(v, i - v));
    }
    args[key] = value;
    skip();
    if (i < s.size()) {
      if (s[i] != ',') bad_call("expected ',' between arguments");
      ++i;
    }
  }
}

std::vector<std::string> words(const std::string& text) {
  std::vector<std::string> out;
  std::string w;
  for (char c : text + " ") {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      w += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!w.empty()) {
      out.push_back(w);
      w.clear();
    }
  }
  return out;
}

std::string normalize_text(const std::string& s) {
  std::string out;
  for (const auto& w : words(s)) out += (out.empty() ? "" : " ") + w;
  return out;
}

}  // namespace

std::optional<ToolCall> parse_tool_call(const std::string& message) {
  size_t tag = message.find(kPythonTag);
  if (tag == std::string::npos) return std::nullopt;
  std::string body = message.substr(tag + sizeof(kPythonTag) - 1);
  for (const char* end : {kEom, kEot}) {
    size_t at = body.find(end);
    if (at != std::string::npos) body.erase(at);
  }
  body = trim(body);
  ToolCall call;
  if (!body.empty() && body[0] == '{') {  // JSON form {"name": ..., "parameters": {...}}
    // Parameters are written back out (dump), which recurses: bound the nesting first.
    try {
      check_json_depth(body, Location{});
    } catch (const InputError&) {
      bad_call("a JSON tool call nested deeper than " + std::to_string(kMaxJsonDepth) +
               " levels");
    }
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("name") || !j["name"].is_string()) {
      bad_call("a JSON tool call needs a string \"name\"");
    }
    call.written_name = j["name"].get<std::string>();
    const auto& params =
        j.contains("parameters") ? j["parameters"] : j.value("arguments", nlohmann::json::object());
    if (!params.is_object()) bad_call("tool call parameters must be an object");
    for (const auto& [k, v] : params.items())
      call.args[k] = v.is_string() ? v.get<std::string>() : v.dump();
  } else {
    size_t dot = body.find(".call(");
    bool ident = dot != std::string::npos && dot > 0 && body.back() == ')';
    for (size_t i = 0; ident && i < dot; ++i) {
      ident = std::isalnum(static_cast<unsigned char>(body[i])) || body[i] == '_';
    }
    if (ident) {
      call.written_name = body.substr(0, dot);
      call.args = parse_kwargs(body.substr(dot + 6, body.size() - dot - 7));
    } else {
      call.written_name = "code_interpreter";  // raw Python after the tag
      call.code = body;
    }
  }
  call.tool = canonical_tool(call.written_name);
  if (call.tool == "python" && call.code.empty()) {
    auto it = call.args.find("code");
    if (it != call.args.end()) call.code = it->second;
  }
  return call;
}

const std::vector<Document>& builtin_documents() {
  static const std::vector<Document> docs = {
      {"Aurora Library",
       "The Aurora Library in the town of Veldt was founded in 1874 by Mira Santos. It holds "
       "48,213 books and 312 historical maps, and its reading room has 96 seats."},
      {"Brindle Archive",
       "The Brindle Archive in Oskar Bay was founded in 1902 by Tobias Wren. It holds 17,950 "
       "books and 1,204 historical maps, and its reading room has 40 seats."},
      {"Port Calder Lighthouse",
       "The Port Calder Lighthouse was built in 1861. The tower is 37 meters tall and its beam "
       "can be seen from 24 kilometers away. It has 214 steps."},
      {"Tessaly River",
       "The Tessaly River is 412 kilometers long and flows through 6 towns before it reaches "
       "the sea. Its average depth is 3.5 meters."},
      {"Kestrel Ridge Observatory",
       "The Kestrel Ridge Observatory stands at an altitude of 2,315 meters. It was founded in "
       "1958 by Hana Okafor, and its main telescope has a mirror 1.8 meters wide."},
      {"Harlow Ferry",
       "The Harlow Ferry crosses the Tessaly River 18 times a day. Each crossing takes 25 "
       "minutes, and the ferry carries up to 140 passengers."},
  };
  return docs;
}

std::vector<Document> load_documents(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw IoError("--docs: '" + dir + "' is not a directory");
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    auto ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".txt" || ext == ".md")) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<Document> docs;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) throw IoError("cannot read document " + f.string());
    std::stringstream ss;
    ss << in.rdbuf();
    docs.push_back({f.stem().string(), ss.str()});
  }
  if (docs.empty()) throw IoError("--docs: no .txt or .md files in '" + dir + "'");
  return docs;
}

ToolRegistry::ToolRegistry(const Sandbox* sandbox, std::vector<Document> documents)
    : sandbox_(sandbox), documents_(std::move(documents)) {}

std::vector<std::string> ToolRegistry::names() const {
  std::vector<std::string> n = {"calculator", "lookup"};
  if (sandbox_) n.push_back("python");
  return n;
}

bool ToolRegistry::has(const std::string& name) const {
  auto n = names();
  return std::find(n.begin(), n.end(), canonical_tool(name)) != n.end();
}

ToolResult ToolRegistry::calculator(const std::string& expression) const {
  try {
    Rational v = evaluate(expression);
    std::string exact = v.str(), dec = v.decimal_or_fraction();
    return {true, dec == exact ? exact : exact + " (= " + dec + ")"};
  } catch (const MathError& e) {
    return {false, std::string("error: ") + e.what()};
  }
}

ToolResult ToolRegistry::lookup(const std::string& query) const {
  static const std::set<std::string> stop = {"the", "a",   "an",   "of",   "in",
                                             "is",  "how", "many", "what", "does",
                                             "do",  "and", "to",   "its",  "it"};
  auto q = words(query);
  double best = 0;
  const Document* hit = nullptr;
  for (const auto& doc : documents_) {
    auto dw = words(doc.title + " " + doc.text);
    std::set<std::string> present(dw.begin(), dw.end());
    double score = 0;
    for (const auto& w : std::set<std::string>(q.begin(), q.end())) {
      if (stop.count(w) || !present.count(w)) continue;
      int df = 0;  // documents containing w: rarer words weigh more
      for (const auto& other : documents_) {
        auto ow = words(other.title + " " + other.text);
        df += std::find(ow.begin(), ow.end(), w) != ow.end();
      }
      score += std::log(1.0 + static_cast<double>(documents_.size()) / df);
    }
    if (score > best) best = score, hit = &doc;
  }
  if (!hit) return {false, "no document matches \"" + query + "\""};
  std::string text = hit->text.size() > 1500 ? hit->text.substr(0, 1500) + "..." : hit->text;
  return {true, hit->title + ": " + text};
}

ToolResult ToolRegistry::python(const std::string& code, int slot) const {
  if (!sandbox_) return {false, "error: the python tool is not available"};
  RunResult r = sandbox_->run(python_program(code), slot);
  std::string out = r.out.size() > 2000 ? r.out.substr(0, 2000) + "\n...(truncated)" : r.out;
  if (r.verdict == Verdict::kPass) return {true, out};
  std::string err = r.err.size() > 1000 ? "..." + r.err.substr(r.err.size() - 1000) : r.err;
  return {false, out + (out.empty() ? "" : "\n") + "error: " + r.describe() +
                     (err.empty() ? "" : "\n" + err)};
}

ToolResult ToolRegistry::run(const ToolCall& call, int slot) const {
  auto arg = [&](std::initializer_list<const char*> keys) -> std::optional<std::string> {
    for (const char* k : keys) {
      auto it = call.args.find(k);
      if (it != call.args.end()) return it->second;
    }
    if (call.args.size() == 1) return call.args.begin()->second;
    return std::nullopt;
  };
  if (call.tool == "calculator") {
    auto e = arg({"expression", "query", "input"});
    return e ? calculator(*e) : ToolResult{false, "error: calculator needs expression=\"...\""};
  }
  if (call.tool == "lookup") {
    auto e = arg({"query", "q"});
    return e ? lookup(*e) : ToolResult{false, "error: lookup needs query=\"...\""};
  }
  if (call.tool == "python") return python(call.code, slot);
  return {false, "error: unknown tool '" + call.written_name + "'"};
}

std::string tool_system_prompt(const std::vector<std::string>& tools) {
  std::string list;
  for (const auto& t : tools) {
    if (t != "python") list += (list.empty() ? "" : ", ") + t;
  }
  std::string s = "Environment: ipython\n";
  if (!list.empty()) s += "Tools: " + list + "\n";
  s += "\nTo call a tool, write <|python_tag|> followed by the call and end the message; the "
       "result comes back in an ipython message.";
  for (const auto& t : tools) {
    if (t == "calculator") s += "\n- calculator.call(expression=\"...\"): exact arithmetic";
    if (t == "lookup") s += "\n- lookup.call(query=\"...\"): search the reference documents";
    if (t == "python") s += "\n- Python: write the code right after <|python_tag|>; print results";
  }
  // Meta's prompts let `Environment: ipython` imply the code interpreter; ours offer it per task
  // (only tasks that list python get a sandbox), so say so rather than let a code call fail.
  if (std::find(tools.begin(), tools.end(), "python") == tools.end()) {
    s += "\nThe code interpreter is not available in this task.";
  }
  s += "\nWhen you know the result, end with a last line \"Answer: ...\".";
  return s;
}

ToolRun execute_tool_attempt(const nlohmann::json& attempt, const ToolRegistry& registry,
                             const std::vector<std::string>& allowed, int slot) {
  std::vector<std::string> parts;
  if (attempt.is_string()) {
    std::string s = attempt.get<std::string>();
    size_t start = 0;
    for (size_t at; (at = s.find(kEom, start)) != std::string::npos;
         start = at + sizeof(kEom) - 1) {
      parts.push_back(s.substr(start, at - start) + kEom);
    }
    parts.push_back(s.substr(start));
  } else if (attempt.is_array()) {
    for (const auto& m : attempt) {
      if (!m.is_string())
        throw InputError(Location{"", 0, "attempts"},
                         "a tool attempt is a string or a list of strings");
      parts.push_back(m.get<std::string>());
    }
  } else {
    throw InputError(Location{"", 0, "attempts"},
                     "a tool attempt is a string or a list of strings");
  }
  ToolRun run;
  for (size_t i = 0; i < parts.size(); ++i) {
    bool has_tag = parts[i].find(kPythonTag) != std::string::npos;
    std::string content = strip_suffix(strip_suffix(parts[i], kEom), kEot);
    if (content.empty()) continue;
    if (!has_tag) {
      run.messages.push_back({{"role", "assistant"}, {"content", content}});
      run.final_text = content;
      continue;
    }
    run.messages.push_back({{"role", "assistant"}, {"content", content}});
    run.final_text.clear();
    ++run.calls;
    ToolResult result;
    try {
      auto call = parse_tool_call(content);
      bool ok_tool = std::find(allowed.begin(), allowed.end(), call->tool) != allowed.end() &&
                     registry.has(call->tool);
      result =
          ok_tool
              ? registry.run(*call, slot)
              : ToolResult{false, "error: tool '" + call->written_name + "' is not available here"};
    } catch (const InputError& e) {
      result = {false, std::string("error: malformed tool call: ") + e.what()};
    }
    if (result.ok)
      ++run.successful_calls;
    else
      run.errors.push_back(result.output);
    run.messages.push_back({{"role", "ipython"}, {"content", result.output}});
  }
  return run;
}

nlohmann::json ToolCheck::details() const {
  return {{"given", given},
          {"calls", run.calls},
          {"successful_calls", run.successful_calls},
          {"tool_errors", run.errors}};
}

ToolCheck check_tool_attempt(const nlohmann::json& attempt, const nlohmann::json& expected,
                             const ToolRegistry& registry, const std::vector<std::string>& allowed,
                             bool require_tool_use, int slot) {
  ToolCheck c;
  c.run = execute_tool_attempt(attempt, registry, allowed, slot);
  std::ostringstream fb;
  bool answer_ok = expected.is_null();
  if (c.run.final_text.empty()) {
    fb << "The dialogue ends without a final answer after the tool results.";
    answer_ok = false;
  } else if (!expected.is_null()) {
    auto given = extract_final_answer(c.run.final_text);
    c.given = given ? *given : trim(c.run.final_text);
    std::string want = expected.is_string() ? expected.get<std::string>() : expected.dump();
    auto gv = parse_number(c.given), wv = parse_number(want);
    answer_ok = wv ? (gv && *gv == *wv) : normalize_text(c.given) == normalize_text(want);
    if (!answer_ok) {
      fb << (given ? "The final answer " + c.given + " is incorrect."
                   : std::string("No final answer line found; end with \"Answer: ...\"."));
    }
  }
  bool used = c.run.successful_calls > 0;
  if (require_tool_use && !used) {
    fb << (fb.tellp() > 0 ? " " : "") << "Use the tools: no tool call succeeded.";
  }
  for (const auto& e : c.run.errors) fb << (fb.tellp() > 0 ? " " : "") << "Tool error: " << e;
  c.passed = answer_ok && (!require_tool_use || used);
  c.verdict = c.passed ? "pass" : "fail";
  c.feedback = c.passed ? "" : fb.str();
  return c;
}

}  // namespace posttrain::synthetic
