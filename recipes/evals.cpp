// The eval stage kind: its config (defaults, check) and the steps that run it (see evals.h).
#include "recipes/evals.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "recipes/eval_results.h"
#include "recipes/heldout.h"

namespace posttrain::recipes {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool contains(const std::vector<std::string>& list, const std::string& s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

std::string join(const std::vector<std::string>& list) {
  std::string all;
  for (const auto& s : list) all += (all.empty() ? "" : ", ") + s;
  return all;
}

// Keys each eval section takes.
std::vector<std::string> section_keys(const std::string& eval) {
  if (eval == "math") return {"count", "seed", "difficulty", "family", "split", "max_new_tokens"};
  if (eval == "code") return {"count", "seed", "difficulty", "max_new_tokens"};
  if (eval == "tool") {
    return {"count", "seed", "difficulty", "family", "split", "max_new_tokens", "max_turns"};
  }
  if (eval == "reward") return {"pairs"};
  if (eval == "dpo") return {"pairs", "reference", "beta"};
  return {"kind",           "count",   "seed",    "difficulty", "family", "split",
          "max_new_tokens", "prompts", "previous"};
}

const std::vector<std::string> kTopKeys = {"model", "reward_model", "max_new_tokens"};

// The flat form of the first eval stage ({"kind": "math", "count", ...}) as {"math": {...}}.
json unflatten(const json& config, const std::string& where) {
  if (!config.contains("kind")) return config;
  if (!config["kind"].is_string() || config["kind"] != "math") {
    throw InputError({where, 0, "kind"},
                     "the flat eval form takes kind \"math\"; for others use {\"tool\": {...}}");
  }
  json out = json::object(), math = json::object();
  for (const auto& [key, value] : config.items()) {
    if (key == "kind") continue;
    if (key == "model") {
      out[key] = value;
    } else if (contains(section_keys("math"), key)) {
      math[key] = value;
    } else {
      throw InputError({where, 0, key},
                       "unknown key (the flat eval form takes kind, count, seed, "
                       "difficulty, max_new_tokens, model)");
    }
  }
  out["math"] = math;
  return out;
}

void require_int(const json& section, const std::string& key, int64_t lo, int64_t hi,
                 const std::string& where, const std::string& at) {
  if (!section.contains(key)) return;
  const json& v = section[key];
  if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi) {
    throw InputError({where, 0, at + key}, "expected an integer in [" + std::to_string(lo) + ", " +
                                               std::to_string(hi) + "]");
  }
}

// A model folder (config.json inside) unless the path is a placeholder or paths are skipped.
void check_model_path(const json& config, const std::string& key, const std::string& where,
                      const std::vector<std::string>& unchecked, bool skip_paths) {
  const json* v = &config;
  std::string rest = key;
  for (size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1)) {
    v = &(*v)[rest.substr(0, dot)];
  }
  if (!v->contains(rest)) return;
  if (!(*v)[rest].is_string()) throw InputError({where, 0, key}, "expected a path");
  if (skip_paths || contains(unchecked, key)) return;
  const std::string path = (*v)[rest].get<std::string>();
  if (!fs::exists(fs::path(path) / "config.json")) {
    throw InputError({where, 0, key}, "not a model folder: " + path);
  }
}

void check_file_path(const json& section, const std::string& key, const std::string& where,
                     const std::string& at, const std::vector<std::string>& unchecked,
                     bool skip_paths) {
  if (!section.contains(key)) return;
  if (!section[key].is_string()) throw InputError({where, 0, at + key}, "expected a path");
  if (skip_paths || contains(unchecked, at + key)) return;
  if (!fs::is_regular_file(section[key].get<std::string>())) {
    throw InputError({where, 0, at + key},
                     "file does not exist: " + section[key].get<std::string>());
  }
}

void check_section(const std::string& eval, const json& s, const std::string& where,
                   const std::vector<std::string>& unchecked, bool skip_paths) {
  const std::string at = eval + ".";
  if (!s.is_object()) throw InputError({where, 0, eval}, "expected an object");
  for (const auto& [key, value] : s.items()) {
    if (!contains(section_keys(eval), key)) {
      throw InputError({where, 0, at + key},
                       "unknown key (" + eval + " takes " + join(section_keys(eval)) + ")");
    }
  }
  require_int(s, "count", 1, 1000000, where, at);
  require_int(s, "seed", 0, int64_t(1) << 62, where, at);
  require_int(s, "max_new_tokens", 1, 1 << 20, where, at);
  require_int(s, "max_turns", 1, 8, where, at);
  if (s.contains("difficulty") &&
      (!s["difficulty"].is_string() ||
       !contains({"easy", "medium", "hard", "mixed"}, s["difficulty"].get<std::string>()))) {
    throw InputError({where, 0, at + "difficulty"}, "expected easy, medium, hard or mixed");
  }
  // synth's --family / --split (held-out problems from synth's held-out split never coincide
  // with training problems drawn with split "train").
  if (s.contains("family") && !s["family"].is_string()) {
    throw InputError({where, 0, at + "family"}, "expected family names (comma-separated)");
  }
  if (s.contains("split") &&
      (!s["split"].is_string() || !contains({"all", "train", "heldout"}, s["split"].get<std::string>()))) {
    throw InputError({where, 0, at + "split"}, "expected all, train or heldout");
  }
  if (eval == "reward" || eval == "dpo") {
    if (!s.contains("pairs")) {
      throw InputError({where, 0, at + "pairs"},
                       "required: a JSONL file of held-out preference pairs");
    }
    check_file_path(s, "pairs", where, at, unchecked, skip_paths);
  }
  if (s.contains("beta") && (!s["beta"].is_number() || !(s["beta"].get<double>() > 0))) {
    throw InputError({where, 0, at + "beta"}, "expected a positive number");
  }
  if (eval == "win_rate") {
    if (s.contains("kind") &&
        (!s["kind"].is_string() || !contains({"math", "code"}, s["kind"].get<std::string>()))) {
      throw InputError({where, 0, at + "kind"}, "expected math or code");
    }
    if (s.contains("prompts") && (s.contains("count") || s.contains("kind"))) {
      throw InputError({where, 0, at + "prompts"},
                       "give either prompts (a JSONL file) or kind/count/seed, not both");
    }
    if (!s.contains("prompts") && !s.contains("count")) {
      throw InputError({where, 0, at + "count"}, "required (or prompts: a JSONL file)");
    }
    check_file_path(s, "prompts", where, at, unchecked, skip_paths);
  }
  if ((eval == "math" || eval == "code" || eval == "tool") && !s.contains("count")) {
    throw InputError({where, 0, at + "count"}, "missing (required)");
  }
}

std::string max_new_tokens(const json& config, const json& section) {
  if (section.contains("max_new_tokens")) return section["max_new_tokens"].dump();
  return config.value("max_new_tokens", json(128)).dump();
}

std::vector<std::string> synth_args(const std::string& kind, const json& s,
                                    const std::string& output) {
  std::vector<std::string> args = {
      "synth", kind, "--count", s["count"].dump(), "--seed", s["seed"].dump(), "--output", output};
  for (const char* key : {"difficulty", "family", "split"}) {
    if (s.contains(key)) args.insert(args.end(), {std::string("--") + key, s[key].get<std::string>()});
  }
  return args;
}

std::vector<std::string> greedy(const std::string& model, const std::string& input,
                                const std::string& output, const std::string& max_new) {
  return {"generate", "--model",       model, "--input",          input,  "--output",
          output,     "--temperature", "0",   "--max-new-tokens", max_new};
}

StageStep in_process(std::function<void(const json&, const StageRun&)> fn) {
  StageStep step;
  step.in_process = std::move(fn);
  return step;
}

// math / code: generate greedily, then verify.
void verified_steps(const std::string& eval, const json& config, const std::string& dir,
                    std::vector<StageStep>* steps) {
  const json& s = config[eval];
  steps->push_back({greedy(config["model"].get<std::string>(), dir + "/problems.jsonl",
                           dir + "/generated.jsonl", max_new_tokens(config, s))});
  steps->push_back(in_process([dir](const json&, const StageRun&) {
    write_verify_input(dir + "/generated.jsonl", dir + "/responses.jsonl");
  }));
  steps->push_back({{"verify", "--kind", eval, "--input", dir + "/responses.jsonl", "--output",
                     dir + "/verdicts.jsonl"}});
}

// tool: up to max_turns greedy assistant turns; a turn that calls a tool gets the tool's result
// (from `verify --kind tool`, which executes the calls) and the dialogue continues.
void tool_steps(const json& config, const std::string& dir, std::vector<StageStep>* steps) {
  const json& s = config["tool"];
  const int turns = s.value("max_turns", 3);
  const std::string model = config["model"].get<std::string>();
  for (int t = 0; t < turns; ++t) {
    const std::string turn = dir + "/turn-" + std::to_string(t);
    steps->push_back(
        in_process([dir, t](const json&, const StageRun&) { write_tool_turn_input(dir, t); }));
    steps->push_back(
        {greedy(model, turn + ".jsonl", turn + ".generated.jsonl", max_new_tokens(config, s))});
    steps->push_back(
        in_process([dir, t](const json&, const StageRun&) { collect_tool_turn(dir, t); }));
    if (t + 1 < turns) {
      steps->push_back({{"verify", "--kind", "tool", "--input", turn + ".open.jsonl", "--output",
                         turn + ".executed.jsonl"}});
    }
  }
  steps->push_back(in_process([dir](const json&, const StageRun&) {
    write_tool_verify_input(dir, dir + "/responses.jsonl");
  }));
  steps->push_back({{"verify", "--kind", "tool", "--input", dir + "/responses.jsonl", "--output",
                     dir + "/verdicts.jsonl"}});
}

}  // namespace

const std::vector<std::string>& eval_names() {
  static const std::vector<std::string> kNames = {"math",   "tool", "code",
                                                  "reward", "dpo",  "win_rate"};
  return kNames;
}

json eval_defaults(const json& config, const std::string& where) {
  if (!config.is_object()) throw InputError({where, 0, "config"}, "expected an object");
  json out = unflatten(config, where);
  if (!out.contains("model")) out["model"] = "${policy}";
  const std::pair<const char*, int> seeds[] = {{"math", kMathEvalSeed},
                                               {"tool", kToolEvalSeed},
                                               {"code", kCodeEvalSeed},
                                               {"win_rate", kWinRateEvalSeed}};
  for (const auto& [eval, seed] : seeds) {
    if (!out.contains(eval) || !out[eval].is_object()) continue;
    if (eval == std::string("win_rate") && out[eval].contains("prompts")) continue;
    if (!out[eval].contains("seed")) out[eval]["seed"] = seed;
  }
  if ((out.contains("reward") || out.contains("win_rate")) && !out.contains("reward_model")) {
    out["reward_model"] = "${reward_model}";
  }
  if (out.contains("win_rate") && out["win_rate"].is_object() &&
      !out["win_rate"].contains("previous")) {
    out["win_rate"]["previous"] = "${previous_policy}";
  }
  if (out.contains("dpo") && out["dpo"].is_object() && !out["dpo"].contains("reference")) {
    out["dpo"]["reference"] = "${previous_policy}";
  }
  return out;
}

void eval_check(const json& config, const std::string& where,
                const std::vector<std::string>& unchecked, bool skip_paths) {
  bool any = false;
  for (const auto& [key, value] : config.items()) {
    if (contains(eval_names(), key)) {
      check_section(key, value, where, unchecked, skip_paths);
      any = true;
    } else if (!contains(kTopKeys, key)) {
      throw InputError({where, 0, key}, "unknown key (eval takes " + join(eval_names()) + ", " +
                                            join(kTopKeys) + ")");
    }
  }
  if (!any) {
    throw InputError({where, 0, "config"},
                     "names no eval (give one or more of " + join(eval_names()) + ")");
  }
  require_int(config, "max_new_tokens", 1, 1 << 20, where, "");
  check_model_path(config, "model", where, unchecked, skip_paths);
  check_model_path(config, "reward_model", where, unchecked, skip_paths);
  check_model_path(config, "win_rate.previous", where, unchecked, skip_paths);
  check_model_path(config, "dpo.reference", where, unchecked, skip_paths);
}

std::vector<StageStep> eval_steps(const json& config, const StageRun& run) {
  auto dir = [&](const std::string& eval) { return run.out_dir + "/" + eval; };
  std::vector<StageStep> steps;
  steps.push_back(in_process([](const json& c, const StageRun& r) {
    // The resolved config beside the stage's folder, as the training kinds leave theirs.
    std::ofstream(r.out_dir + ".config.json", std::ios::trunc) << c.dump(2) << "\n";
    for (const auto& eval : eval_names()) {
      if (c.contains(eval)) fs::create_directories(r.out_dir + "/" + eval);
    }
    // Pair files are copied: the held-out check may leave pairs out.
    for (const char* eval : {"reward", "dpo"}) {
      if (!c.contains(eval)) continue;
      fs::copy_file(c[eval]["pairs"].get<std::string>(), r.out_dir + "/" + eval + "/pairs.jsonl");
    }
  }));
  // 1. The held-out data, written first and checked against the store before any model runs.
  for (const char* eval : {"math", "tool", "code"}) {
    if (config.contains(eval)) {
      steps.push_back({synth_args(eval, config[eval], dir(eval) + "/problems.jsonl")});
    }
  }
  if (config.contains("win_rate")) {
    const json& s = config["win_rate"];
    if (s.contains("prompts")) {
      steps.push_back(in_process([d = dir("win_rate")](const json& c, const StageRun&) {
        copy_prompt_rows(c["win_rate"]["prompts"].get<std::string>(), d + "/problems.jsonl");
      }));
    } else {
      steps.push_back(
          {synth_args(s.value("kind", "math"), s, dir("win_rate") + "/problems.jsonl")});
    }
  }
  steps.push_back(in_process(
      [](const json& c, const StageRun& r) { exclude_training_prompts(c, r.out_dir, r.store); }));
  // 2. Each eval's commands.
  if (config.contains("math")) verified_steps("math", config, dir("math"), &steps);
  if (config.contains("tool")) tool_steps(config, dir("tool"), &steps);
  if (config.contains("code")) verified_steps("code", config, dir("code"), &steps);
  if (config.contains("reward")) {
    const std::string d = dir("reward");
    steps.push_back(in_process([d](const json& c, const StageRun&) {
      write_pair_score_input(d + "/pairs.jsonl", d + "/score_input.jsonl");
    }));
    steps.push_back({{"reward", "score", "--model", config["reward_model"].get<std::string>(),
                      "--input", d + "/score_input.jsonl", "--output", d + "/scores.jsonl"}});
  }
  if (config.contains("dpo")) {
    const json& s = config["dpo"];
    std::vector<std::string> args = {"dpo",         "eval",
                                     "--model",     config["model"].get<std::string>(),
                                     "--reference", s["reference"].get<std::string>(),
                                     "--input",     dir("dpo") + "/pairs.jsonl",
                                     "--output",    dir("dpo") + "/scored.jsonl"};
    if (s.contains("beta")) args.insert(args.end(), {"--beta", s["beta"].dump()});
    steps.push_back({args});
  }
  if (config.contains("win_rate")) {
    const json& s = config["win_rate"];
    const std::string d = dir("win_rate"), n = max_new_tokens(config, s);
    const std::string rm = config["reward_model"].get<std::string>();
    steps.push_back({greedy(config["model"].get<std::string>(), d + "/problems.jsonl",
                            d + "/new.generated.jsonl", n)});
    steps.push_back({greedy(s["previous"].get<std::string>(), d + "/problems.jsonl",
                            d + "/previous.generated.jsonl", n)});
    steps.push_back(in_process([d](const json&, const StageRun&) {
      write_answer_score_input(d + "/new.generated.jsonl", d + "/new.score_input.jsonl");
      write_answer_score_input(d + "/previous.generated.jsonl", d + "/previous.score_input.jsonl");
    }));
    for (const char* side : {"new", "previous"}) {
      steps.push_back(
          {{"reward", "score", "--model", rm, "--input", d + "/" + side + ".score_input.jsonl",
            "--output", d + "/" + side + ".scores.jsonl"}});
    }
  }
  // 3. The numbers.
  steps.push_back(
      in_process([](const json& c, const StageRun& r) { write_eval_results(c, r.out_dir); }));
  return steps;
}

}  // namespace posttrain::recipes
