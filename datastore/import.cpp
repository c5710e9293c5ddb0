// JSONL import (see import.h). Each line is parsed and fully validated into a ParsedRow before
// anything is written, so a skipped line (--skip-bad) leaves nothing behind; the whole file is
// one transaction, so a failure or a crash leaves the store as it was.
#include "datastore/import.h"

#include <nlohmann/json.hpp>

#include "common/jsonl.h"

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
};

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
      throw InputError(where, "expected a \"\\n\\nHuman:\" or \"\\n\\nAssistant:\" turn at "
                              "offset " + std::to_string(pos));
    }
    size_t start = pos + (human ? kHuman.size() : kAssistant.size());
    size_t next = std::min(t.find(kHuman, start), t.find(kAssistant, start));
    std::string content = t.substr(start, next == std::string::npos ? std::string::npos : next - start);
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
                       "marginally_better or null, got " + s->dump());
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
  std::string base = path.substr(path.find_last_of('/') == std::string::npos
                                     ? 0
                                     : path.find_last_of('/') + 1);
  auto dot = base.find('.');
  return dot == std::string::npos || dot == 0 ? base : base.substr(0, dot);
}

}  // namespace

ImportSummary import_jsonl(Store& store, const std::string& path, const ImportOptions& options) {
  JsonlReader reader(path);
  const int default_round = options.round.value_or(0);
  const std::string default_source = options.source.value_or(file_stem(path));
  ImportSummary sum;
  Transaction tx = store.transaction();
  Json row;
  std::vector<int64_t> ids;
  while (true) {
    ParsedRow parsed;
    bool got_line = false;
    try {
      if (!reader.next(&row)) break;
      got_line = true;
      ++sum.lines;
      Location where = reader.where();
      switch (options.format) {
        case ImportFormat::kTrl: parse_trl(row, where, &parsed); break;
        case ImportFormat::kHhRlhf: parse_hh(row, where, &parsed); break;
        case ImportFormat::kRanking: parse_ranking(row, where, &parsed); break;
        case ImportFormat::kAnnotations: parse_annotations(row, where, &parsed); break;
        case ImportFormat::kMessages: parse_messages(row, where, &parsed); break;
      }
    } catch (const InputError& e) {
      if (!options.skip_bad) throw;
      if (!got_line) ++sum.lines;  // the line was not even JSON
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
