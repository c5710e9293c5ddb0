#include "recipes/stage_kinds.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "common/error.h"
#include "core/train/config.h"
#include "dpo/options.h"
#include "recipes/evals.h"
#include "rejection_sampling/config.h"
#include "reward/config.h"
#include "sft/sft.h"

namespace posttrain::recipes {
namespace {

using nlohmann::json;

bool contains(const std::vector<std::string>& list, const std::string& s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

// Resolves `config` against `schema`, with the path keys in `unchecked` (or all, skip_paths)
// taken as plain strings: they name folders earlier stages have not made yet.
void check_with_schema(const core::ConfigSchema& schema, const json& config,
                       const std::string& where, const std::vector<std::string>& unchecked,
                       bool skip_paths) {
  core::ConfigSchema relaxed;
  for (core::ConfigKey key : schema.keys()) {
    const std::string name = key.section + "." + key.key;
    if (key.type == core::ConfigType::kPath && (skip_paths || contains(unchecked, name))) {
      key.type = core::ConfigType::kString;
    }
    // A JSON key whose check reads files (data.sources) cannot check paths that earlier stages
    // or other machines will provide.
    const bool placeholder_inside =
        std::any_of(unchecked.begin(), unchecked.end(),
                    [&](const std::string& u) { return u.rfind(name, 0) == 0; });
    if (key.type == core::ConfigType::kJson && key.check && (skip_paths || placeholder_inside)) {
      key.check = nullptr;
    }
    relaxed.add(std::move(key));
  }
  relaxed.resolve(config, {}, where);
}

// Writes the stage's resolved config beside its output folder (a config.json inside it would
// collide with the checkpoint's own) and returns its path.
std::string write_stage_config(const json& config, const StageRun& run) {
  const std::string path = run.out_dir + ".config.json";
  std::ofstream out(path, std::ios::trunc);
  out << config.dump(2) << "\n";
  if (!out) throw IoError("cannot write stage config " + path);
  return path;
}

// ---- sft: the keys of `posttrain sft --config` ----------------------------------------------

json sft_defaults(const json& config, const std::string& where) {
  json out = config;
  if (out.contains("output") && out["output"].is_object() && out["output"].contains("dir")) {
    throw InputError({where, 0, "output.dir"},
                     "set by the recipe (the stage's folder OUT/round-R/NAME); remove it");
  }
  if (!out.contains("model") || !out["model"].is_object()) out["model"] = json::object();
  if (!out["model"].contains("path")) out["model"]["path"] = "${policy}";
  if (!out.contains("output") || !out["output"].is_object()) out["output"] = json::object();
  out["output"]["dir"] = "${out}";
  return out;
}

void sft_check(const json& config, const std::string& where,
               const std::vector<std::string>& unchecked, bool skip_paths) {
  check_with_schema(sft::sft_schema(), config, where, unchecked, skip_paths);
}

std::vector<StageStep> sft_steps(const json& config, const StageRun& run) {
  return {{{"sft", "--config", write_stage_config(config, run)}}};
}

// ---- reward / dpo: the keys of `posttrain reward train` / `posttrain dpo train` ---------------
// Both start from the newest policy unless model.path says otherwise (a reward model starts
// from the policy's backbone with a fresh head); DPO's reference defaults to its model.path.

void reward_check(const json& config, const std::string& where,
                  const std::vector<std::string>& unchecked, bool skip_paths) {
  check_with_schema(reward::reward_schema(), config, where, unchecked, skip_paths);
}

std::vector<StageStep> reward_steps(const json& config, const StageRun& run) {
  return {{{"reward", "train", "--config", write_stage_config(config, run)}}};
}

void dpo_check(const json& config, const std::string& where,
               const std::vector<std::string>& unchecked, bool skip_paths) {
  check_with_schema(dpo::dpo_schema(), config, where, unchecked, skip_paths);
}

std::vector<StageStep> dpo_steps(const json& config, const StageRun& run) {
  return {{{"dpo", "train", "--config", write_stage_config(config, run)}}};
}

// ---- sample: the keys of `posttrain sample --config` (rejection sampling) ---------------------
// Samples from the newest policy; prompts default to the round's synthetic problems in the run's
// store, and the candidates, scores, selections and pairs go to that store and round.

json sample_defaults(const json& config, const std::string& where) {
  json out = config;
  if (out.contains("output") && out["output"].is_object()) {
    for (const char* owned : {"dir", "store", "round"}) {
      if (out["output"].contains(owned)) {
        throw InputError({where, 0, std::string("output.") + owned},
                         "set by the recipe (the stage's folder, the run's store and round); "
                         "remove it");
      }
    }
  }
  if (!out.contains("model") || !out["model"].is_object()) out["model"] = json::object();
  if (!out["model"].contains("path")) out["model"]["path"] = "${policy}";
  if (!out.contains("prompts") || !out["prompts"].is_object()) out["prompts"] = json::object();
  if (!out["prompts"].contains("path") && !out["prompts"].contains("store")) {
    out["prompts"]["store"] = "${store}";
    out["prompts"]["store_round"] = "${round}";
  }
  if (!out.contains("output") || !out["output"].is_object()) out["output"] = json::object();
  out["output"]["dir"] = "${out}";
  out["output"]["store"] = "${store}";
  out["output"]["round"] = "${round}";
  return out;
}

void sample_check(const json& config, const std::string& where,
                  const std::vector<std::string>& unchecked, bool skip_paths) {
  check_with_schema(rejection_sampling::sample_schema(), config, where, unchecked, skip_paths);
}

std::vector<StageStep> sample_steps(const json& config, const StageRun& run) {
  return {{{"sample", "--config", write_stage_config(config, run)}}};
}

// ---- synth: `posttrain synth KIND` with its options as a JSON object --------------------------

// Options of `posttrain synth` a recipe may give (the runner sets --store, --round, --output).
const std::vector<std::string>& synth_options() {
  static const std::vector<std::string> kOptions = {
      "kind",      "count",     "seed",      "difficulty",    "candidates", "model",
      "source",    "max-attempts", "workers", "timeout",      "memory-mb",  "problems",
      "docs",      "near-dup",  "min-chars", "max-chars",     "no-step-check", "allow-no-tool",
      "family",    "reference", "split",     "sample-seed",   "temperature", "top-p",
      "top-k",     "min-p",     "max-new-tokens", "device",   "dtype",      "chat-template",
      "kv-cache-mb"};
  return kOptions;
}

json synth_defaults(const json& config, const std::string& where) {
  for (const char* owned : {"store", "round", "output", "out"}) {
    if (config.contains(owned)) {
      throw InputError({where, 0, owned}, "set by the recipe; remove it");
    }
  }
  return config;
}

void synth_check(const json& config, const std::string& where,
                 const std::vector<std::string>& unchecked, bool skip_paths) {
  if (!config.is_object()) throw InputError({where, 0, "config"}, "expected an object");
  for (const auto& [key, value] : config.items()) {
    if (!contains(synth_options(), key)) {
      std::string all;
      for (const auto& o : synth_options()) all += (all.empty() ? "" : ", ") + o;
      throw InputError({where, 0, key}, "not an option of posttrain synth (options: " + all + ")");
    }
    if (!value.is_string() && !value.is_number() && !value.is_boolean()) {
      throw InputError({where, 0, key}, std::string("expected a string, number or bool, got ") +
                                            value.type_name());
    }
  }
  if (!config.contains("kind") || !config["kind"].is_string() ||
      !contains({"math", "code", "tool"}, config["kind"].get<std::string>())) {
    throw InputError({where, 0, "kind"}, "required: math, code or tool");
  }
  if (!config.contains("count") || !config["count"].is_number_integer() ||
      config["count"].get<int64_t>() < 1) {
    throw InputError({where, 0, "count"}, "required: a positive integer");
  }
  for (const char* path_key : {"candidates", "problems", "docs", "model"}) {
    if (!config.contains(path_key) || skip_paths || contains(unchecked, path_key)) continue;
    if (!config[path_key].is_string()) {
      throw InputError({where, 0, path_key}, "expected a path string");
    }
    std::ifstream probe(config[path_key].get<std::string>());
    if (!probe) {
      throw InputError({where, 0, path_key},
                       "path does not exist: " + config[path_key].get<std::string>());
    }
  }
}

std::vector<StageStep> synth_steps(const json& config, const StageRun& run) {
  std::vector<std::string> args = {"synth", config["kind"].get<std::string>()};
  for (const auto& [key, value] : config.items()) {
    if (key == "kind") continue;
    if (value.is_boolean()) {
      if (value.get<bool>()) args.push_back("--" + key);
      continue;
    }
    args.push_back("--" + key);
    args.push_back(value.is_string() ? value.get<std::string>() : value.dump());
  }
  args.insert(args.end(), {"--store", run.store, "--round", std::to_string(run.round),
                           "--output", run.out_dir + "/data.jsonl"});
  return {{args}};
}

// ---- average: {"inputs": [checkpoint folders], "weights": [...]?} ----------------------------

json average_defaults(const json& config, const std::string& where) {
  if (config.contains("output")) {
    throw InputError({where, 0, "output"}, "set by the recipe; remove it");
  }
  return config;
}

void average_check(const json& config, const std::string& where,
                   const std::vector<std::string>& unchecked, bool skip_paths) {
  if (!config.is_object()) throw InputError({where, 0, "config"}, "expected an object");
  for (const auto& [key, value] : config.items()) {
    if (key != "inputs" && key != "weights") {
      throw InputError({where, 0, key}, "unknown key (average takes inputs, weights)");
    }
  }
  if (!config.contains("inputs") || !config["inputs"].is_array() || config["inputs"].size() < 2) {
    throw InputError({where, 0, "inputs"}, "required: a list of at least two checkpoint folders");
  }
  for (size_t i = 0; i < config["inputs"].size(); ++i) {
    if (!config["inputs"][i].is_string()) {
      throw InputError({where, 0, "inputs[" + std::to_string(i) + "]"}, "expected a path string");
    }
  }
  if (config.contains("weights")) {
    const json& w = config["weights"];
    if (!w.is_array() || w.size() != config["inputs"].size()) {
      throw InputError({where, 0, "weights"}, "expected one number per input");
    }
    for (size_t i = 0; i < w.size(); ++i) {
      if (!w[i].is_number() || !(w[i].get<double>() > 0) || !std::isfinite(w[i].get<double>())) {
        throw InputError({where, 0, "weights[" + std::to_string(i) + "]"},
                         "expected a positive number");
      }
    }
  }
}

std::vector<StageStep> average_steps(const json& config, const StageRun& run) {
  std::vector<std::string> args = {"average", "--output", run.out_dir};
  for (const auto& input : config["inputs"]) args.push_back(input.get<std::string>());
  if (config.contains("weights")) {
    std::string w;
    for (const auto& x : config["weights"]) w += (w.empty() ? "" : ",") + x.dump();
    args.insert(args.end(), {"--weights", w});
  }
  return {{args}};
}

// ---- eval: recipes/evals.h -------------------------------------------------------------------

const std::vector<StageKind>& kinds() {
  static const std::vector<StageKind> kKinds = {
      {"sft", "policy", true, sft_defaults, sft_check, sft_steps},
      {"reward", "reward_model", true, sft_defaults, reward_check, reward_steps},
      {"dpo", "policy", true, sft_defaults, dpo_check, dpo_steps},
      {"synth", "", false, synth_defaults, synth_check, synth_steps},
      {"sample", "", false, sample_defaults, sample_check, sample_steps},
      {"average", "policy", false, average_defaults, average_check, average_steps},
      {"eval", "", false, eval_defaults, eval_check, eval_steps},
  };
  return kKinds;
}

}  // namespace

const StageKind& stage_kind(const std::string& name, const std::string& where) {
  for (const auto& k : kinds()) {
    if (k.name == name) return k;
  }
  std::string all;
  for (const auto& k : kinds()) all += (all.empty() ? "" : ", ") + k.name;
  throw InputError({where, 0, "kind"}, "unknown stage kind '" + name + "' (kinds: " + all + ")");
}

std::vector<std::string> stage_kind_names() {
  std::vector<std::string> names;
  for (const auto& k : kinds()) names.push_back(k.name);
  return names;
}

}  // namespace posttrain::recipes
