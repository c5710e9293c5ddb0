// JSONL export (see export.h). Stored bodies are already canonical JSON, so a value already in
// the file's shape is copied without parsing; a value of the other shape and a folded prompt are
// parsed, converted and re-serialised. Identical lines are dropped by their SHA-256.
#include "datastore/export.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <unordered_set>

#include "datastore/internal.h"
#include "datastore/strength.h"

namespace posttrain::datastore {

ExportFormat parse_export_format(const std::string& name) {
  if (name == "trl") return ExportFormat::kTrl;
  if (name == "openrlhf") return ExportFormat::kOpenRlhf;
  if (name == "messages") return ExportFormat::kMessages;
  throw UsageError("unknown export format '" + name + "' (expected trl, openrlhf or messages)");
}

Json to_text(const Json& content) {
  if (content.is_string()) return content;
  auto text_of = [](const Json& m) {
    auto c = m.find("content");
    if (c != m.end() && c->is_string()) return c->get<std::string>();
    auto t = m.find("tool_calls");
    return t != m.end() ? t->dump() : std::string();
  };
  if (content.size() == 1) return text_of(content[0]);
  std::string out;
  for (const Json& m : content) {
    std::string role = m.at("role").get<std::string>();
    std::string label = role == "user"        ? "Human"
                        : role == "assistant" ? "Assistant"
                        : role == "system"    ? "System"
                                              : role;
    if (label == role && !label.empty()) label[0] = static_cast<char>(std::toupper(label[0]));
    out += "\n\n" + label + ": " + text_of(m);
  }
  return out;
}

Json to_messages(const Json& content, const std::string& role) {
  if (content.is_array()) return content;
  return Json::array({Json{{"role", role}, {"content", content}}});
}

namespace {

// Writes lines to a file or stdout; IoError on failure.
class LineSink {
 public:
  explicit LineSink(const std::string& path) : path_(path) {
    if (path == "-") {
      out_ = &std::cout;
    } else {
      file_.rdbuf()->pubsetbuf(buffer_, sizeof(buffer_));
      file_.open(path, std::ios::binary | std::ios::trunc);
      if (!file_) throw IoError("cannot open " + path + " for writing");
      out_ = &file_;
    }
  }
  void write(const std::string& line) {
    out_->write(line.data(), static_cast<std::streamsize>(line.size()));
    if (!*out_) throw IoError("write failed: " + path_);
  }
  void close() {
    out_->flush();
    if (!*out_) throw IoError("write failed: " + path_);
    if (file_.is_open()) file_.close();
  }

 private:
  std::string path_;
  char buffer_[1 << 16];
  std::ofstream file_;
  std::ostream* out_ = nullptr;
};

// Remembers the SHA-256 of every line written. Off when rows cannot repeat: stored pairs are
// unique on (prompt, chosen, rejected) ids and ids are unique per content, so only a
// transformation (--as, --expand-rankings, a folded prompt) can make two rows equal.
class Deduper {
 public:
  explicit Deduper(bool on) : on_(on) {}
  bool first_time(const std::string& line) {
    return !on_ || seen_.insert(sha256_digest(line)).second;
  }

 private:
  bool on_;
  std::unordered_set<std::string> seen_;
};

std::string json_key(const std::string& key) { return Json(key).dump(); }

// One output triple as canonical JSON texts, with the shapes they were stored in.
struct Triple {
  std::string_view prompt, chosen, rejected;
  bool prompt_messages, chosen_messages, rejected_messages;
  std::optional<Strength> strength;  // the label this ordering carries (none: unlabelled)
  double margin = 0;
};

// `body` (canonical JSON stored with shape `is_messages`) in `shape`.
std::string convert(std::string_view body, bool is_messages, Shape shape, const char* role) {
  if (is_messages == (shape == Shape::kMessages)) return std::string(body);
  Json v = Json::parse(body);
  return (shape == Shape::kText ? to_text(v) : to_messages(v, role)).dump();
}

// prompt + response as one conversation (a pair format without a prompt key): a user turn (or
// the prompt's messages) then the assistant's, or for text the two strings end to end.
std::string fold(std::string_view prompt, std::string_view response, Shape shape) {
  Json p = Json::parse(prompt), r = Json::parse(response);
  if (shape == Shape::kText && p.is_string() && r.is_string())
    return Json(p.get<std::string>() + r.get<std::string>()).dump();
  Json all = to_messages(p, "user");
  for (const Json& m : to_messages(r, "assistant")) all.push_back(m);
  return (shape == Shape::kText ? to_text(all) : all).dump();
}

// The shape every value of the file gets: `as`, else messages when any value that will be
// written is a message list (TRL treats a row as conversational when any column is, and Arrow
// readers want one type per column), else text.
Shape file_shape(Store& store, const PairFilter& filter, const ExportOptions& options) {
  if (options.as) return *options.as;
  if (options.format == ExportFormat::kOpenRlhf) return Shape::kMessages;
  Statement s(store.db(), internal::pair_query_sql(filter));
  internal::bind_pair_filter(s, filter);
  while (s.step()) {
    for (int col = 13; col <= 15; ++col) {
      if (s.column_view(col) == "messages") return Shape::kMessages;
    }
    if (options.expand_rankings && !s.column_is_null(16) && s.column_view(16) == "messages")
      return Shape::kMessages;
  }
  return Shape::kText;
}

}  // namespace

ExportSummary export_jsonl(Store& store, const std::string& path, const ExportOptions& options) {
  ExportSummary sum;
  std::string line;
  if (options.format == ExportFormat::kMessages) {
    if (options.expand_rankings || options.as || options.filter.min_strength ||
        options.filter.annotator || options.margin) {
      throw UsageError(
          "--format messages exports dialogues: --expand-rankings, --as, --margin, "
          "--min-strength and --annotator apply to pair formats only");
    }
    Deduper dedup(false);  // dialogues are unique on content
    Statement s(store.db(),
                internal::dialogue_query_sql(options.filter.rounds, options.filter.source));
    internal::bind_dialogue_filter(s, options.filter.rounds, options.filter.source);
    LineSink sink(path);
    while (s.step()) {
      line = "{\"messages\":";
      line += s.column_view(1);
      line += "}\n";
      if (!dedup.first_time(line)) {
        ++sum.duplicates;
        continue;
      }
      sink.write(line);
      ++sum.rows;
    }
    sink.close();
    return sum;
  }
  const bool trl = options.format == ExportFormat::kTrl;
  const std::string pk = trl ? "prompt" : options.prompt_key.value_or("");
  const std::string kp = pk.empty() ? "" : json_key(pk) + ":";
  const std::string kc = json_key(trl ? "chosen" : options.chosen_key) + ":";
  const std::string kr = json_key(trl ? "rejected" : options.rejected_key) + ":";
  PairFilter filter = options.filter;
  filter.with_content = true;
  const Shape shape = file_shape(store, filter, options);
  // Rows can only repeat after a transformation (see Deduper); a shape change is one.
  Deduper dedup(options.expand_rankings || options.as || pk.empty() ||
                shape == Shape::kMessages);
  Statement s(store.db(), internal::pair_query_sql(filter));
  internal::bind_pair_filter(s, filter);
  LineSink sink(path);
  std::vector<Triple> triples;
  while (s.step()) {
    std::string_view p = s.column_view(9), c = s.column_view(10), r = s.column_view(11);
    bool pm = s.column_view(13) == "messages", cm = s.column_view(14) == "messages",
         rm = s.column_view(15) == "messages";
    std::optional<Strength> strength;
    if (!s.column_is_null(5)) strength = parse_strength(s.column_text(5));
    triples.clear();
    if (options.expand_rankings && !s.column_is_null(12)) {
      std::string_view e = s.column_view(12);
      bool em = s.column_view(16) == "messages";
      // edited>chosen carries no label; edited>rejected the chosen>rejected one (strength.h).
      triples.push_back({p, e, c, pm, em, cm, std::nullopt, ranking_pair_margin(strength, true, true)});
      triples.push_back({p, e, r, pm, em, rm, strength, ranking_pair_margin(strength, true, false)});
    }
    triples.push_back({p, c, r, pm, cm, rm, strength, strength_margin(strength)});
    for (const Triple& t : triples) {
      line = "{";
      if (pk.empty()) {
        line += kc + fold(t.prompt, t.chosen, shape) + ",";
        line += kr + fold(t.prompt, t.rejected, shape);
      } else {
        line += kp + convert(t.prompt, t.prompt_messages, shape, "user") + ",";
        line += kc + convert(t.chosen, t.chosen_messages, shape, "assistant") + ",";
        line += kr + convert(t.rejected, t.rejected_messages, shape, "assistant");
      }
      line += ",\"strength\":";
      line += t.strength ? json_key(strength_name(*t.strength)) : "null";
      if (options.margin) line += ",\"margin\":" + Json(t.margin).dump();
      line += "}\n";
      if (!dedup.first_time(line)) {
        ++sum.duplicates;
        continue;
      }
      sink.write(line);
      ++sum.rows;
    }
  }
  sink.close();
  return sum;
}

}  // namespace posttrain::datastore
