// JSONL import (see import.h). Each line is parsed and fully validated into a ParsedRow before
// anything is written, so a skipped line (--skip-bad) leaves nothing behind; the whole file is
// one transaction, so a failure or a crash leaves the store as it was.
#include "datastore/import.h"

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/json_depth.h"
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

namespace internal {
namespace {

// SAX handler for a flat TRL line: accepts one top-level object whose values are all strings,
// keeps the decoded values of prompt, chosen and rejected (swapped out of the lexer's buffer,
// no copy) and ignores other string fields. Any other event (a nested value, a non-string
// value, a repeated wanted key, a parse error) stops the parse, so sax_parse returns false.
class TrlSax final : public nlohmann::json_sax<Json> {
 public:
  explicit TrlSax(std::string* values[3]) : values_(values) {}
  bool complete() const { return seen_ == 7; }

  bool null() override { return false; }
  bool boolean(bool) override { return false; }
  bool number_integer(number_integer_t) override { return false; }
  bool number_unsigned(number_unsigned_t) override { return false; }
  bool number_float(number_float_t, const string_t&) override { return false; }
  bool binary(binary_t&) override { return false; }
  bool start_array(std::size_t) override { return false; }
  bool end_array() override { return false; }
  bool start_object(std::size_t) override {
    if (opened_) return false;  // nested
    opened_ = true;
    return true;
  }
  bool end_object() override { return true; }  // only the top level gets this far
  bool key(string_t& k) override {
    static const char* const kNames[3] = {"prompt", "chosen", "rejected"};
    if (k == "strength") return false;  // a labelled row: the general path reads the label
    slot_ = -1;
    for (int i = 0; i < 3; ++i) {
      if (k != kNames[i]) continue;
      if (seen_ & (1 << i)) return false;  // repeated: the DOM keeps the last, let it judge
      seen_ |= 1 << i;
      slot_ = i;
    }
    return true;
  }
  bool string(string_t& v) override {
    if (!opened_) return false;  // a bare string, not an object
    if (slot_ >= 0) values_[slot_]->swap(v);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  std::string** values_;
  bool opened_ = false;
  int slot_ = -1;
  int seen_ = 0;  // bit i: kNames[i] seen
};

// True when nlohmann's dump() of `s` is `s` in quotes: no '"', '\\' or control character.
bool needs_no_escape(const std::string& s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == '"' || c == '\\') return false;
  }
  return true;
}

// Turns the decoded string in c->text into its canonical JSON and digest (as canonicalize()
// would for the same string value). False for an empty string (the general path names it).
bool finish(Canonical* c) {
  if (c->text.empty()) return false;
  c->shape = Shape::kText;
  if (needs_no_escape(c->text)) {
    c->text.insert(c->text.begin(), '"');
    c->text.push_back('"');
  } else {
    c->text = canonical_json(Json(std::move(c->text)));
  }
  c->digest = sha256_digest(c->text);
  return true;
}

}  // namespace

bool parse_trl_sax(std::string_view line, TrlStrings* out) {
  std::string* values[3] = {&out->prompt.text, &out->chosen.text, &out->rejected.text};
  for (std::string* v : values) v->clear();
  TrlSax sax(values);
  if (!Json::sax_parse(line.data(), line.data() + line.size(), &sax) || !sax.complete()) {
    return false;
  }
  if (!finish(&out->prompt) || !finish(&out->chosen) || !finish(&out->rejected)) return false;
  return out->chosen.digest != out->rejected.digest;  // identical: the general path names it
}

}  // namespace internal

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
// common TRL line can skip building a JSON document.
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
  check_json_depth(line.data(), line.data() + line.size(), where);
  try {
    *row = Json::parse(line);
  } catch (const Json::exception& e) {  // parse_error, or out_of_range for "1e999"
    throw InputError(where, std::string("not valid JSON (") + e.what() + ")");
  }
  if (!row->is_object()) throw InputError(where, "expected a JSON object on each line");
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

// TRL's implicit prompt: chosen and rejected are whole conversations (or texts) and the prompt
// is what they share. Message lists split at the first differing message; texts at the first
// differing character (moved back to a UTF-8 boundary, and before a space, as TRL's
// extract_prompt does), so both remainders are non-empty.
void split_implicit_prompt(const Json& chosen, const Json& rejected, const Location& where,
                           Json* prompt, Json* c, Json* r) {
  if (chosen.is_array() && rejected.is_array()) {
    size_t n = 0;
    while (n < chosen.size() && n < rejected.size() && chosen[n] == rejected[n]) ++n;
    if (n == 0) {
      throw InputError(at(where, "rejected[0]"),
                       "no \"prompt\" and chosen and rejected share no first message (TRL's "
                       "implicit prompt is their common prefix)");
    }
    if (n == chosen.size() || n == rejected.size()) {
      throw InputError(at(where, n == chosen.size() ? "chosen" : "rejected"),
                       "no \"prompt\" and nothing follows the shared messages");
    }
    *prompt = Json(chosen.begin(), chosen.begin() + static_cast<std::ptrdiff_t>(n));
    *c = Json(chosen.begin() + static_cast<std::ptrdiff_t>(n), chosen.end());
    *r = Json(rejected.begin() + static_cast<std::ptrdiff_t>(n), rejected.end());
    return;
  }
  if (chosen.is_string() && rejected.is_string()) {
    const std::string& a = chosen.get_ref<const std::string&>();
    const std::string& b = rejected.get_ref<const std::string&>();
    size_t n = 0;
    while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
    // Not inside a UTF-8 sequence: a continuation byte at n means its character began before.
    while (n > 0 && n < a.size() && (static_cast<unsigned char>(a[n]) & 0xC0) == 0x80) --n;
    if (n > 0 && a[n - 1] == ' ') --n;
    if (n == 0 || n == a.size() || n == b.size()) {
      throw InputError(at(where, "prompt"),
                       "missing, and chosen and rejected share no prefix to use as the prompt");
    }
    *prompt = a.substr(0, n);
    *c = a.substr(n);
    *r = b.substr(n);
    return;
  }
  throw InputError(at(where, "prompt"),
                   "missing, and chosen and rejected are not both message lists or both texts");
}

void parse_trl(const Json& row, const Location& where, ParsedRow* out) {
  auto p = row.find("prompt");
  if (p != row.end() && !p->is_null()) {
    out->prompt = content_field(row, "prompt", where);
    out->responses.push_back(content_field(row, "chosen", where));
    out->responses.push_back(content_field(row, "rejected", where));
  } else {
    // Validate the whole conversations first so errors name their own fields.
    Canonical full_c = content_field(row, "chosen", where);
    Canonical full_r = content_field(row, "rejected", where);
    require_distinct(full_c, full_r, "rejected", "chosen", where);
    Json prompt, c, r;
    split_implicit_prompt(row.at("chosen"), row.at("rejected"), where, &prompt, &c, &r);
    out->prompt = canonicalize(prompt, at(where, "chosen"));
    out->responses.push_back(canonicalize(c, at(where, "chosen")));
    out->responses.push_back(canonicalize(r, at(where, "rejected")));
  }
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

// An optional "strength" (one of the four names, or null), as TRL exports write it.
void read_strength(const Json& row, const Location& where, ParsedRow* out) {
  auto it = row.find("strength");
  if (it == row.end() || it->is_null()) return;
  if (!it->is_string() || !parse_strength(it->get<std::string>())) {
    throw InputError(at(where, "strength"),
                     "expected significantly_better, better, slightly_better, "
                     "marginally_better or null, got " +
                         it->dump());
  }
  out->strength = parse_strength(it->get<std::string>());
}

void parse_annotations(const Json& row, const Location& where, ParsedRow* out) {
  parse_trl(row, where, out);
  auto field = [&](const char* name) -> const Json* {
    auto it = row.find(name);
    return it == row.end() || it->is_null() ? nullptr : &*it;
  };
  read_strength(row, where, out);
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
  internal::TrlStrings trl;
  while (reader.next(&line)) {
    ++sum.lines;
    parsed.clear();
    try {
      Location where = reader.where();
      // A line the SAX reader accepts was valid JSON, hence valid UTF-8 (nlohmann's lexer
      // checks every string byte); anything else is judged, and named, by the general path.
      bool fast = options.format == ImportFormat::kTrl && internal::parse_trl_sax(line, &trl);
      if (fast) {
        parsed.prompt = std::move(trl.prompt);
        parsed.responses.push_back(std::move(trl.chosen));
        parsed.responses.push_back(std::move(trl.rejected));
        parsed.pairs.emplace_back(0, 1);
      } else {
        if (!is_valid_utf8(reader.text())) throw InputError(where, "line is not valid UTF-8");
        parse_object(line, where, &row);
        switch (options.format) {
          case ImportFormat::kTrl:
            parse_trl(row, where, &parsed);
            read_strength(row, where, &parsed);
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
