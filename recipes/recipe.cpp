#include "recipes/recipe.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/config_file.h"
#include "common/error.h"
#include "recipes/heldout.h"
#include "recipes/placeholders.h"
#include "recipes/stage_kinds.h"

namespace posttrain::recipes {
namespace {

using nlohmann::json;

InputError key_error(const std::string& source, const std::string& key, const std::string& what) {
  return InputError(Location{source, 0, key}, what);
}

void only_keys(const json& obj, const std::vector<std::string>& allowed, const std::string& source,
               const std::string& prefix) {
  for (const auto& [key, value] : obj.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string all;
      for (const auto& a : allowed) all += (all.empty() ? "" : ", ") + a;
      throw key_error(source, prefix + key, "unknown key (keys here: " + all + ")");
    }
  }
}

std::string string_field(const json& obj, const std::string& key, const std::string& source,
                         const std::string& prefix) {
  if (!obj.contains(key)) throw key_error(source, prefix + key, "missing (required)");
  if (!obj[key].is_string() || obj[key].get<std::string>().empty()) {
    throw key_error(source, prefix + key, "expected a non-empty string");
  }
  return obj[key].get<std::string>();
}

bool valid_stage_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

StageSpec parse_stage(const json& s, const std::string& source, const std::string& at) {
  if (!s.is_object()) throw key_error(source, at, "a stage must be an object {name, kind, config}");
  only_keys(s, {"name", "kind", "config"}, source, at + ".");
  StageSpec stage;
  stage.where = at;
  stage.name = string_field(s, "name", source, at + ".");
  if (!valid_stage_name(stage.name) || stage.name == "init") {
    throw key_error(source, at + ".name",
                    "'" + stage.name + "': use letters, digits, '_' and '-' (and not 'init')");
  }
  stage.kind = string_field(s, "kind", source, at + ".");
  stage_kind(stage.kind, source + " " + at);  // known kind
  if (s.contains("config")) {
    if (!s["config"].is_object()) throw key_error(source, at + ".config", "expected an object");
    stage.config = s["config"];
  }
  return stage;
}

void parse_model(const json& model, Recipe* r, const std::string& source) {
  if (model.is_string() && !model.get<std::string>().empty()) {
    r->model_path = model.get<std::string>();
    return;
  }
  if (!model.is_object() || !model.contains("init")) {
    throw key_error(source, "model",
                    "expected a checkpoint folder (string) or {\"init\": {\"preset\": ...}}");
  }
  only_keys(model, {"init"}, source, "model.");
  const json& init = model["init"];
  if (!init.is_object()) throw key_error(source, "model.init", "expected an object");
  only_keys(init, {"preset", "seed", "tokenizer"}, source, "model.init.");
  string_field(init, "preset", source, "model.init.");
  if (init.contains("seed") &&
      (!init["seed"].is_number_integer() || init["seed"].get<int64_t>() < 0)) {
    throw key_error(source, "model.init.seed", "expected a non-negative integer");
  }
  if (init.contains("tokenizer")) string_field(init, "tokenizer", source, "model.init.");
  r->init = init;
}

json apply_overrides(json doc, const std::vector<std::string>& overrides) {
  for (const auto& text : overrides) {
    const auto eq = text.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw InputError(Location{"--set", 0, text}, "expected key=value");
    }
    const std::string key = text.substr(0, eq), value = text.substr(eq + 1);
    if (key != "name" && key != "store" && key != "num_rounds" && key != "model" &&
        key != "launcher") {
      throw InputError(Location{"--set", 0, key},
                       "a recipe's --set takes name, store, num_rounds, model or launcher");
    }
    try {
      doc[key] = json::parse(value);
    } catch (const json::exception&) {
      doc[key] = value;
    }
  }
  return doc;
}

// Dotted key paths ("model.path", "data.sources[0].path") of strings holding a placeholder.
void placeholder_keys(const json& v, const std::string& path, std::vector<std::string>* out) {
  if (v.is_string()) {
    if (v.get<std::string>().find("${") != std::string::npos) out->push_back(path);
  } else if (v.is_object()) {
    for (const auto& [key, x] : v.items()) {
      placeholder_keys(x, path.empty() ? key : path + "." + key, out);
    }
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      placeholder_keys(v[i], path + "[" + std::to_string(i) + "]", out);
    }
  }
}

}  // namespace

const RoundSpec& Recipe::round(int r) const {
  return rounds[std::min<size_t>(static_cast<size_t>(r), rounds.size() - 1)];
}

Recipe parse_recipe(const json& input, const std::string& source,
                    const std::vector<std::string>& overrides) {
  if (!input.is_object()) throw key_error(source, "", "a recipe must be a JSON object");
  const json doc = apply_overrides(input, overrides);
  only_keys(doc, {"name", "model", "store", "num_rounds", "rounds", "launcher"}, source, "");
  Recipe r;
  r.source = source;
  r.name = string_field(doc, "name", source, "");
  if (!doc.contains("model")) throw key_error(source, "model", "missing (required)");
  parse_model(doc["model"], &r, source);
  if (doc.contains("store")) r.store = string_field(doc, "store", source, "");
  if (doc.contains("num_rounds")) {
    const json& n = doc["num_rounds"];
    if (!n.is_number_integer() || n.get<int64_t>() < 1 || n.get<int64_t>() > 1000) {
      throw key_error(source, "num_rounds", "expected an integer in [1, 1000]");
    }
    r.num_rounds = n.get<int>();
  }
  if (doc.contains("launcher")) {
    const json& l = doc["launcher"];
    bool ok = l.is_array();
    for (const auto& a : l) ok = ok && a.is_string() && !a.get<std::string>().empty();
    if (!ok) throw key_error(source, "launcher", "expected a list of non-empty strings (argv)");
    r.launcher = l.get<std::vector<std::string>>();
  }
  if (!doc.contains("rounds") || !doc["rounds"].is_array() || doc["rounds"].empty()) {
    throw key_error(source, "rounds", "required: a non-empty list of {\"stages\": [...]}");
  }
  for (size_t i = 0; i < doc["rounds"].size(); ++i) {
    const std::string at = "rounds[" + std::to_string(i) + "]";
    const json& round = doc["rounds"][i];
    if (!round.is_object()) throw key_error(source, at, "expected {\"stages\": [...]}");
    only_keys(round, {"stages"}, source, at + ".");
    if (!round.contains("stages") || !round["stages"].is_array() || round["stages"].empty()) {
      throw key_error(source, at + ".stages", "required: a non-empty list of stages");
    }
    RoundSpec spec;
    std::set<std::string> names;
    for (size_t j = 0; j < round["stages"].size(); ++j) {
      StageSpec stage = parse_stage(round["stages"][j], source,
                                    at + ".stages[" + std::to_string(j) + "]");
      if (!names.insert(stage.name).second) {
        throw key_error(source, stage.where + ".name",
                        "'" + stage.name + "' names another stage of this round too");
      }
      spec.stages.push_back(std::move(stage));
    }
    r.rounds.push_back(std::move(spec));
  }
  return r;
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  const ConfigDocument doc = read_config_file(path);  // JSON, or YAML by extension
  try {
    return parse_recipe(doc.value, path, overrides);
  } catch (const InputError& e) {
    throw doc.locate(e);  // a YAML recipe's errors name the key's line
  }
}

void check_recipe(const Recipe& recipe, int rounds, bool skip_paths) {
  if (!skip_paths && !recipe.model_path.empty() && !std::filesystem::exists(recipe.model_path)) {
    throw key_error(recipe.source, "model", "path does not exist: " + recipe.model_path);
  }
  bool have_reward_model = false;
  for (int r = 0; r < rounds; ++r) {
    std::vector<std::string> earlier;  // stage names of this round so far
    for (const StageSpec& stage : recipe.round(r).stages) {
      const std::string where = recipe.source + " " + stage.where + " (round " +
                                std::to_string(r) + ", stage " + stage.name + ")";
      const StageKind& kind = stage_kind(stage.kind, where);
      const json config = kind.with_defaults(stage.config, where);
      for (const std::string& name : placeholders_in(config, where)) {
        if (name.rfind("stage:", 0) == 0) {
          const std::string target = name.substr(6);
          if (std::find(earlier.begin(), earlier.end(), target) == earlier.end()) {
            throw key_error(where, "${" + name + "}",
                            "names stage '" + target + "', which does not come earlier in round " +
                                std::to_string(r));
          }
        } else if (name == "reward_model" && !have_reward_model) {
          throw key_error(where, "${reward_model}",
                          "no stage before this one trains a reward model");
        }
      }
      std::vector<std::string> unchecked;
      placeholder_keys(config, "", &unchecked);
      const json stand_in = substitute(
          config,
          [&](const std::string& name) -> std::optional<std::string> {
            if (name == "round") return std::to_string(r);
            return "<" + name + ">";
          },
          where);
      kind.check(stand_in, where, unchecked, skip_paths);
      if (kind.produces == "reward_model") have_reward_model = true;
      earlier.push_back(stage.name);
    }
  }
  check_heldout_disjoint(recipe, rounds);
}

}  // namespace posttrain::recipes
