#include "core/data/preference.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/jsonl.h"

namespace posttrain::core {

namespace {

using Json = nlohmann::json;

constexpr const char* kStrengthNames[] = {"marginally_better", "slightly_better", "better",
                                          "significantly_better"};

Location at_field(const Location& where, const std::string& field) {
  Location at = where;
  at.field = field;
  return at;
}

// A field that is present and not null, or nullptr.
const Json* optional_field(const Json& row, const char* name) {
  auto it = row.find(name);
  return it == row.end() || it->is_null() ? nullptr : &*it;
}

void require_content(const Json& v, const Location& where) {
  if (v.is_string()) {
    if (v.get_ref<const std::string&>().empty()) throw InputError(where, "empty text");
    return;
  }
  if (!v.is_array()) {
    throw InputError(where,
                     std::string("expected a string or a list of messages, got ") + v.type_name());
  }
  if (v.empty()) throw InputError(where, "empty list of messages");
}

// A named piece of the row (prompt or a response) before it is typed.
struct Field {
  Json value;
  std::string name;  // for errors: "chosen", "responses[2]", ...
};

// TRL's implicit prompt: the longest common prefix of the two conversations (message lists) or
// strings; for strings a space just before the first difference stays with the responses.
void split_implicit_prompt(Field* chosen, Field* rejected, Json* prompt, const Location& where) {
  Json& c = chosen->value;
  Json& r = rejected->value;
  if (c == r) throw InputError(at_field(where, "rejected"), "identical to chosen");
  if (c.is_array() && r.is_array()) {
    size_t i = 0;
    while (i < c.size() && i < r.size() && c[i] == r[i]) ++i;
    *prompt = Json(Json::array());
    for (size_t k = 0; k < i; ++k) prompt->push_back(c[k]);
    c = Json(std::vector<Json>(c.begin() + i, c.end()));
    r = Json(std::vector<Json>(r.begin() + i, r.end()));
  } else if (c.is_string() && r.is_string()) {
    const std::string cs = c.get<std::string>(), rs = r.get<std::string>();
    size_t i = 0;
    while (i < cs.size() && i < rs.size() && cs[i] == rs[i]) ++i;
    if (i > 0 && i < cs.size() && i < rs.size() && cs[i - 1] == ' ') --i;
    *prompt = cs.substr(0, i);
    c = cs.substr(i);
    r = rs.substr(i);
  } else {
    throw InputError(at_field(where, "rejected"),
                     "without a prompt, chosen and rejected must both be strings or both be "
                     "message lists");
  }
  if (prompt->empty()) {
    throw InputError(at_field(where, "prompt"),
                     "no prompt given and chosen and rejected share no prefix");
  }
}

// The ranked responses of a ranking row, best first (and their field names).
std::vector<Field> ranked_responses(const Json& row, const Location& where) {
  const Json& responses = require_field(row, "responses", where);
  if (!responses.is_array()) {
    throw InputError(at_field(where, "responses"),
                     std::string("expected a list, got ") + responses.type_name());
  }
  const std::vector<int64_t> ranking = require_int_list(row, "ranking", where);
  if (ranking.size() < 2) throw InputError(at_field(where, "ranking"), "needs at least two indices");
  std::vector<bool> seen(responses.size(), false);
  std::vector<Field> out;
  for (size_t i = 0; i < ranking.size(); ++i) {
    const Location f = at_field(where, "ranking[" + std::to_string(i) + "]");
    const int64_t k = ranking[i];
    if (k < 0 || k >= static_cast<int64_t>(responses.size())) {
      throw InputError(f, "index " + std::to_string(k) + " is outside responses (" +
                              std::to_string(responses.size()) + ")");
    }
    if (seen[k]) throw InputError(f, "index repeated");
    seen[k] = true;
    out.push_back({responses[k], "responses[" + std::to_string(k) + "]"});
  }
  return out;
}

std::vector<ChatMessage> as_messages(const Field& f, const std::string& role,
                                     const Location& where) {
  if (f.value.is_string()) return {ChatMessage{role, f.value.get<std::string>(), -1}};
  return parse_messages(f.value, at_field(where, f.name));
}

// Optional "strength", "source", "round".
void read_labels(const Json& row, const Location& where, const std::string& default_source,
                 PreferenceExample* ex) {
  if (const Json* s = optional_field(row, "strength")) {
    auto parsed = s->is_string() ? parse_preference_strength(s->get<std::string>()) : std::nullopt;
    if (!parsed) {
      throw InputError(at_field(where, "strength"),
                       "expected significantly_better, better, slightly_better, "
                       "marginally_better or null, got " + s->dump());
    }
    ex->strength = parsed;
  }
  ex->source = default_source;
  if (optional_field(row, "source")) ex->source = require_string(row, "source", where);
  if (optional_field(row, "round")) {
    ex->round = require_int(row, "round", where);
    if (ex->round < 0) throw InputError(at_field(where, "round"), "must be >= 0");
  }
}

}  // namespace

const char* preference_strength_name(PreferenceStrength s) {
  return kStrengthNames[static_cast<int>(s)];
}

std::optional<PreferenceStrength> parse_preference_strength(const std::string& name) {
  for (int i = 0; i < 4; ++i) {
    if (name == kStrengthNames[i]) return static_cast<PreferenceStrength>(i);
  }
  return std::nullopt;
}

int64_t PreferenceExample::num_responses() const {
  return static_cast<int64_t>(is_text ? response_texts.size() : responses.size());
}

PreferenceExample parse_preference_example(const Json& row, const Location& where,
                                           const PreferenceReadOptions& options) {
  PreferenceExample ex;
  ex.where = where;
  // The prompt and the responses best first, untyped.
  Json prompt;
  std::vector<Field> responses;
  if (row.contains("ranking") || row.contains("responses")) {
    if (row.contains("chosen") || row.contains("rejected")) {
      throw InputError(where, "give either responses/ranking or chosen/rejected, not both");
    }
    prompt = require_field(row, "prompt", where);
    responses = ranked_responses(row, where);
  } else {
    if (!row.contains("chosen") && !row.contains("rejected")) {
      throw InputError(where, "expected chosen and rejected (or responses and ranking)");
    }
    responses = {{require_field(row, "chosen", where), "chosen"},
                 {require_field(row, "rejected", where), "rejected"}};
    if (const Json* p = optional_field(row, "prompt")) {
      prompt = *p;
    } else {
      if (optional_field(row, "edited")) {
        throw InputError(at_field(where, "edited"), "needs an explicit prompt");
      }
      split_implicit_prompt(&responses[0], &responses[1], &prompt, where);
    }
  }
  require_content(prompt, at_field(where, "prompt"));
  for (const auto& r : responses) require_content(r.value, at_field(where, r.name));
  if (const Json* e = optional_field(row, "edited")) {
    require_content(*e, at_field(where, "edited"));
    for (size_t i = 1; i < responses.size(); ++i) {
      if (*e == responses[i].value) {
        throw InputError(at_field(where, "edited"),
                         "identical to " + responses[i].name + ", ranked below the best");
      }
    }
    if (*e != responses[0].value) {  // an edit that changed nothing is no edit
      responses.insert(responses.begin(), Field{*e, "edited"});
      ex.edited = true;
    }
  }
  for (size_t a = 0; a < responses.size(); ++a) {
    for (size_t b = a + 1; b < responses.size(); ++b) {
      if (responses[a].value == responses[b].value) {
        throw InputError(at_field(where, responses[b].name), "identical to " + responses[a].name);
      }
    }
  }
  bool all_strings = prompt.is_string();
  for (const auto& r : responses) all_strings = all_strings && r.value.is_string();
  ex.is_text = all_strings && !options.strings_as_chat;
  if (ex.is_text) {
    ex.prompt_text = prompt.get<std::string>();
    for (const auto& r : responses) ex.response_texts.push_back(r.value.get<std::string>());
  } else {
    ex.prompt = as_messages({prompt, "prompt"}, "user", where);
    for (const auto& r : responses) ex.responses.push_back(as_messages(r, "assistant", where));
  }
  read_labels(row, where, options.default_source, &ex);
  return ex;
}

std::vector<PreferenceExample> read_preference_examples(const std::string& path,
                                                        const PreferenceReadOptions& options) {
  PreferenceReadOptions o = options;
  if (o.default_source.empty()) o.default_source = std::filesystem::path(path).stem().string();
  JsonlReader reader(path);
  std::vector<PreferenceExample> out;
  Json row;
  while (reader.next(&row)) out.push_back(parse_preference_example(row, reader.where(), o));
  return out;
}

}  // namespace posttrain::core
