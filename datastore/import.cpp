// JSONL import (see import.h). Each line is parsed and fully validated into a ParsedRow before
// anything is written, so a skipped line (--skip-bad) leaves nothing behind; the whole file is
// one transaction, so a failure or a crash leaves the store as it was.
#include "datastore/import.h"

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/jsonl.h"
#include "datastore/internal.h"

namespace posttrain::datastore {

ImportFormat parse_import_format(const std::string& name) {
  if (name == "trl") return ImportFormat::kTrl;
  if (name == "hh-rlhf") return ImportFormat::kHhRlhf;
  if (name == "ranking") return ImportFormat::kRanking;
  if (name == "annotations") return ImportFormat::kAnnotations;
  if (name == "messages") return ImportFormat::kMessages;
  throw UsageError("unknown import format '" + name +
                   "' (expected trl, hh-rlhf, ranking, annotations or messages)");
}

namespace {

// One line, validated and canonicalised: a prompt, its responses, and the preference pairs
// among them (indices into responses), or a dialogue for the messages format.
struct ParsedRow {
  Canonical prompt;
  std::vector<Canonical> responses;
  std::vector<std::pair<int, int>> pairs;  // (chosen, rejected)
  int edited = -1;                         // index into responses, or -1
  std::optional<Strength> strength;
  std::string annotator;
  std::optional<int> round;
  std::optional<std::string> source;
  Canonical dialogue;  // messages format only

  void clear() {
    responses.clear();
    pairs.clear();
    edited = -1;
    strength.reset();
    annotator.clear();
    round.reset();
    source.reset();
  }
};

// Reads lines into a reused buffer (JsonlReader's rules: blank lines skipped, a trailing CR
// dropped, 1-based line numbers), leaving UTF-8 and JSON checks to the caller so that the
// common TRL line can skip the general JSON parser.
class LineReader {
 public:
  explicit LineReader(const std::string& path) : path_(path) {
    if (path == "-") {
      in_ = &std::cin;
      path_ = "<stdin>";
      return;
    }
    file_.rdbuf()->pubsetbuf(buffer_, sizeof(buffer_));
    file_.open(path, std::ios::binary);
    if (!file_) throw IoError("cannot open " + path + " for reading");
    in_ = &file_;
  }
  bool next(std::string_view* line) {
    while (std::getline(*in_, text_)) {
      ++line_;
      if (!text_.empty() && text_.back() == '\r') text_.pop_back();
      if (text_.find_first_not_of(" \t") == std::string::npos) continue;
      *line = text_;
      return true;
    }
    if (in_->bad()) throw IoError("read error in " + path_);
    return false;
  }
  Location where() const { return {path_, line_, ""}; }
  const std::string& text() const { return text_; }  // the line next() returned

 private:
  std::string path_;
  char buffer_[1 << 16];
  std::ifstream file_;
  std::istream* in_ = nullptr;
  std::string text_;
  int64_t line_ = 0;
};

// The general path: the line as a JSON object, with JsonlReader's error messages.
void parse_object(std::string_view line, const Location& where, Json* row) {
  try {
    *row = Json::parse(line);
  } catch (const Json::parse_error& e) {
    throw InputError(where, std::string("not valid JSON (") + e.what() + ")");
  }
  if (!row->is_object()) throw InputError(where, "expected a JSON object on each line");
}

// Fast path for the commonest TRL line: one flat object whose values are all strings. Returns
// false (the caller then takes the general path, which also produces any error message) for
// anything else, or for values the general path must judge (empty, identical). A string token
// without escapes is already its own canonical JSON (the line is valid UTF-8 and a raw control
// character would not scan), so it is hashed as it stands.
bool parse_trl_fast(std::string_view s, const Location& where, ParsedRow* out) {
  size_t i = 0, n = s.size();
  auto ws = [&] {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  };
  // Scans a string token at i; *escaped says whether it holds a backslash.
  auto token = [&](std::string_view* tok, bool* escaped) {
    if (i >= n || s[i] != '"') return false;
    size_t start = i++;
    *escaped = false;
    while (i < n) {
      auto c = static_cast<unsigned char>(s[i]);
      if (c == '"') {
        *tok = s.substr(start, ++i - start);
        return true;
      }
      if (c == '\\') {
        *escaped = true;
        i += 2;
        continue;
      }
      if (c < 0x20) return false;
      ++i;
    }
    return false;
  };
  std::string_view want[3] = {"\"prompt\"", "\"chosen\"", "\"rejected\""};
  std::string_view got[3];
  bool got_escaped[3] = {false, false, false};
  ws();
  if (i >= n || s[i] != '{') return false;
  ++i;
  ws();
  while (true) {
    std::string_view key, value;
    bool key_escaped, value_escaped;
    if (!token(&key, &key_escaped) || key_escaped) return false;
    ws();
    if (i >= n || s[i] != ':') return false;
    ++i;
    ws();
    if (!token(&value, &value_escaped)) return false;
    bool wanted = key == want[0] || key == want[1] || key == want[2];
    if (value_escaped && !wanted) return false;  // its escapes are the general parser's to judge
    for (int k = 0; k < 3; ++k) {
      if (key != want[k]) continue;
      if (!got[k].empty()) return false;  // a repeated key: let the general parser decide
      got[k] = value;
      got_escaped[k] = value_escaped;
    }
    ws();
    if (i >= n) return false;
    if (s[i] == ',') {
      ++i;
      ws();
      continue;
    }
    if (s[i] != '}') return false;
    ++i;
    ws();
    if (i != n) return false;
    break;
  }
  Canonical c[3];
  for (int k = 0; k < 3; ++k) {
    if (got[k].size() <= 2) return false;  // missing or empty
    c[k].shape = Shape::kText;
    if (got_escaped[k]) {
      Json v;
      try {
        v = Json::parse(got[k]);
      } catch (const Json::parse_error&) {
        return false;
      }
      if (v.get_ref<const std::string&>().empty()) return false;
      c[k].text = canonical_json(v);
    } else {
      c[k].text.assign(got[k]);
    }
    c[k].digest = internal::digest(c[k].text);
  }
  if (c[1].digest == c[2].digest) return false;
  out->prompt = std::move(c[0]);
  out->responses.push_back(std::move(c[1]));
  out->responses.push_back(std::move(c[2]));
  out->pairs.emplace_back(0, 1);
  return true;
}

Location at(const Location& where, const std::string& field) {
  Location l = where;
  l.field = field;
  return l;
}

Canonical content_field(const Json& row, const std::string& field, const Location& where) {
  return canonicalize(require_field(row, field, where), at(where, field));
}

void require_distinct(const Canonical& a, const Canonical& b, const std::string& field_b,
                      const std::string& field_a, const Location& where) {
  if (a.digest == b.digest) throw InputError(at(where, field_b), "identical to " + field_a);
}

void parse_trl(const Json& row, const Location& where, ParsedRow* out) {
  out->prompt = content_field(row, "prompt", where);
  out->responses.push_back(content_field(row, "chosen", where));
  out->responses.push_back(content_field(row, "rejected", where));
  require_distinct(out->responses[0], out->responses[1], "rejected", "chosen", where);
  out->pairs.emplace_back(0, 1);
}

// Splits "\n\nHuman: a\n\nAssistant: b ..." into messages. `text` must start with a turn.
Json parse_transcript(const std::string& text, const Location& where) {
  static const std::string kHuman = "\n\nHuman:", kAssistant = "\n\nAssistant:";
  std::string t = text;
  if (t.rfind("Human:", 0) == 0) t = "\n\n" + t;  // tolerate a missing leading blank line
  Json messages = Json::array();
  size_t pos = 0;
  while (pos < t.size()) {
    bool human = t.compare(pos, kHuman.size(), kHuman) == 0;
    bool assistant = !human && t.compare(pos, kAssistant.size(), kAssistant) == 0;
    if (!human && !assistant) {
      throw InputError(where,
                       "expected a \"\\n\\nHuman:\" or \"\\n\\nAssistant:\" turn at "
                       "offset " +
                           std::to_string(pos));
    }
    size_t start = pos + (human ? kHuman.size() : kAssistant.size());
    size_t next = std::min(t.find(kHuman, start), t.find(kAssistant, start));
    std::string content =
        t.substr(start, next == std::string::npos ? std::string::npos : next - start);
    if (!content.empty() && content[0] == ' ') content.erase(0, 1);
    messages.push_back(Json{{"role", human ? "user" : "assistant"}, {"content", content}});
    pos = next == std::string::npos ? t.size() : next;
  }
  if (messages.empty()) throw InputError(where, "no turns before the final answer");
  return messages;
}

void parse_hh(const Json& row, const Location& where, ParsedRow* out) {
  static const std::string kAssistant = "\n\nAssistant:";
  std::string prefix[2], answer[2];
  const char* names[2] = {"chosen", "rejected"};
  for (int i = 0; i < 2; ++i) {
    std::string t = require_string(row, names[i], where);
    size_t pos = t.rfind(kAssistant);
    if (pos == std::string::npos) {
      throw InputError(at(where, names[i]), "no \"\\n\\nAssistant:\" turn in the transcript");
    }
    prefix[i] = t.substr(0, pos);
    answer[i] = t.substr(pos + kAssistant.size());
    if (!answer[i].empty() && answer[i][0] == ' ') answer[i].erase(0, 1);
    if (answer[i].empty()) throw InputError(at(where, names[i]), "empty final answer");
  }
  if (prefix[0] != prefix[1]) {
    throw InputError(at(where, "rejected"),
                     "the conversation before the final answer differs from chosen's");
  }
  Json prompt = parse_transcript(prefix[0], at(where, "chosen"));
  out->prompt = canonicalize(prompt, at(where, "chosen"));
  for (int i = 0; i < 2; ++i) {
    Json reply = Json::array({Json{{"role", "assistant"}, {"content", answer[i]}}});
    out->responses.push_back(canonicalize(reply, at(where, names[i])));
  }
  require_distinct(out->responses[0], out->responses[1], "rejected", "chosen", where);
  out->pairs.emplace_back(0, 1);
}

void parse_ranking(const Json& row, const Location& where, ParsedRow* out) {
  out->prompt = content_field(row, "prompt", where);
  const Json& responses = require_field(row, "responses", where);
  if (!responses.is_array()) {
    throw InputError(at(where, "responses"),
                     std::string("expected a list, got ") + responses.type_name());
  }
  for (size_t i = 0; i < responses.size(); ++i) {
    out->responses.push_back(
        canonicalize(responses[i], at(where, "responses[" + std::to_string(i) + "]")));
  }
  std::vector<int64_t> ranking = require_int_list(row, "ranking", where);
  if (ranking.size() < 2) throw InputError(at(where, "ranking"), "needs at least two indices");
  std::vector<bool> seen(responses.size(), false);
  for (size_t i = 0; i < ranking.size(); ++i) {
    std::string f = "ranking[" + std::to_string(i) + "]";
    if (ranking[i] < 0 || ranking[i] >= static_cast<int64_t>(responses.size())) {
      throw InputError(at(where, f), "index " + std::to_string(ranking[i]) + " is outside " +
                                         "responses (" + std::to_string(responses.size()) + ")");
    }
    if (seen[ranking[i]]) throw InputError(at(where, f), "index repeated");
    seen[ranking[i]] = true;
  }
  for (size_t a = 0; a < ranking.size(); ++a) {
    for (size_t b = a + 1; b < ranking.size(); ++b) {
      require_distinct(out->responses[ranking[a]], out->responses[ranking[b]],
                       "responses[" + std::to_string(ranking[b]) + "]",
                       "responses[" + std::to_string(ranking[a]) + "]", where);
      out->pairs.emplace_back(static_cast<int>(ranking[a]), static_cast<int>(ranking[b]));
    }
  }
  auto edited = row.find("edited");
  if (edited != row.end() && !edited->is_null()) {
    Canonical e = canonicalize(*edited, at(where, "edited"));
    for (size_t a = 0; a < ranking.size(); ++a) {
      if (out->responses[ranking[a]].digest != e.digest) continue;
      if (a == 0) return;  // the edit left the best response unchanged: no edit
      throw InputError(at(where, "edited"), "identical to a response ranked below the best");
    }
    out->responses.push_back(std::move(e));
    out->edited = static_cast<int>(out->responses.size()) - 1;
  }
}

void parse_annotations(const Json& row, const Location& where, ParsedRow* out) {
  parse_trl(row, where, out);
  auto field = [&](const char* name) -> const Json* {
    auto it = row.find(name);
    return it == row.end() || it->is_null() ? nullptr : &*it;
  };
  if (const Json* s = field("strength")) {
    if (!s->is_string() || !parse_strength(s->get<std::string>())) {
      throw InputError(at(where, "strength"),
                       "expected significantly_better, better, slightly_better, "
                       "marginally_better or null, got " +
                           s->dump());
    }
    out->strength = parse_strength(s->get<std::string>());
  }
  if (field("annotator")) out->annotator = require_string(row, "annotator", where);
  if (field("source")) {
    out->source = require_string(row, "source", where);
    if (out->source->empty()) throw InputError(at(where, "source"), "empty string");
  }
  if (field("round")) {
    int64_t r = require_int(row, "round", where);
    if (r < 0 || r > 1000000) throw InputError(at(where, "round"), "out of range");
    out->round = static_cast<int>(r);
  }
  if (const Json* e = field("edited")) {
    out->responses.push_back(canonicalize(*e, at(where, "edited")));
    require_distinct(out->responses[1], out->responses[2], "edited", "rejected", where);
    out->edited = 2;
  }
}

void parse_messages(const Json& row, const Location& where, ParsedRow* out) {
  out->dialogue = content_field(row, "messages", where);
  if (out->dialogue.shape != Shape::kMessages) {
    throw InputError(at(where, "messages"), "expected a list of messages, got a string");
  }
}

std::string file_stem(const std::string& path) {
  if (path == "-") return "stdin";
  std::string base =
      path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
  auto dot = base.find('.');
  return dot == std::string::npos || dot == 0 ? base : base.substr(0, dot);
}

}  // namespace

ImportSummary import_jsonl(Store& store, const std::string& path, const ImportOptions& options) {
  LineReader reader(path);
  const int default_round = options.round.value_or(0);
  const std::string default_source = options.source.value_or(file_stem(path));
  ImportSummary sum;
  Transaction tx = store.transaction();
  Json row;
  std::string_view line;
  std::vector<int64_t> ids;
  ParsedRow parsed;
  while (reader.next(&line)) {
    ++sum.lines;
    parsed.clear();
    try {
      Location where = reader.where();
      if (!internal::valid_utf8(line)) throw InputError(where, "line is not valid UTF-8");
      bool fast = options.format == ImportFormat::kTrl && parse_trl_fast(line, where, &parsed);
      if (!fast) {
        parse_object(line, where, &row);
        switch (options.format) {
          case ImportFormat::kTrl:
            parse_trl(row, where, &parsed);
            break;
          case ImportFormat::kHhRlhf:
            parse_hh(row, where, &parsed);
            break;
          case ImportFormat::kRanking:
            parse_ranking(row, where, &parsed);
            break;
          case ImportFormat::kAnnotations:
            parse_annotations(row, where, &parsed);
            break;
          case ImportFormat::kMessages:
            parse_messages(row, where, &parsed);
            break;
        }
      }
    } catch (const InputError& e) {
      if (!options.skip_bad) throw;
      ++sum.skipped;
      if (options.on_skipped) options.on_skipped(e);
      continue;
    }
    if (options.on_progress && options.progress_every > 0 &&
        sum.lines % options.progress_every == 0) {
      options.on_progress(sum.lines);
    }
    const int round = parsed.round.value_or(default_round);
    const std::string& source = parsed.source ? *parsed.source : default_source;
    if (options.format == ImportFormat::kMessages) {
      KeptDialogue d;
      d.messages = row.at("messages");
      d.source = source;
      d.round = round;
      bool fresh = store.add_dialogue(d).second;
      ++(fresh ? sum.imported : sum.duplicates);
      continue;
    }
    int64_t prompt_id = store.add_prompt(parsed.prompt, source);
    ids.clear();
    NewResponse nr;
    nr.prompt_id = prompt_id;
    nr.round = round;
    for (const Canonical& c : parsed.responses) ids.push_back(store.add_response(nr, c));
    for (auto [c, r] : parsed.pairs) {
      NewPair p;
      p.prompt_id = prompt_id;
      p.chosen_id = ids[c];
      p.rejected_id = ids[r];
      if (parsed.edited >= 0) p.edited_id = ids[parsed.edited];
      p.strength = parsed.strength;
      p.source = source;
      p.annotator = parsed.annotator;
      p.round = round;
      bool fresh = store.add_pair(p).second;
      ++(fresh ? sum.imported : sum.duplicates);
    }
  }
  tx.commit();
  return sum;
}

}  // namespace posttrain::datastore
