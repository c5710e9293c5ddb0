// What the recipe runner knows of each kind of stage: the defaults it fills in, how a config
// is checked before anything runs, which `posttrain` command runs it, and what it produces.
// Every stage runs as its own `posttrain` process, exactly as a user would run it alone, so a
// stage behaves the same inside and outside a recipe and a crash stays inside its process.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain::recipes {

struct StageRun {
  std::string out_dir;  // this stage's folder (created empty by the runner)
  std::string store;
  int round = 0;
};

// One step of a stage: a `posttrain` command line, or (when `in_process` is set) work done by
// the runner itself between commands (reshaping one command's output into the next's input).
struct StageStep {
  std::vector<std::string> args;
  std::function<void(const nlohmann::json& config, const StageRun& run)> in_process = nullptr;
};

struct StageKind {
  std::string name;
  // What the stage's output folder is: "policy", "reward_model", or "" (data only).
  std::string produces;
  // Whether the stage writes OUT/metrics.jsonl (its lines go to the store's metrics table).
  bool trains = false;
  // The config with the runner's defaults (placeholders unresolved). Throws InputError naming
  // `where` when the config sets what the runner owns (an output folder).
  nlohmann::json (*with_defaults)(const nlohmann::json& config, const std::string& where);
  // Validates a default-filled config whose placeholders were replaced by stand-ins; keys in
  // `unchecked_paths` ("data.store", "model.path") are not required to exist.
  void (*check)(const nlohmann::json& config, const std::string& where,
                const std::vector<std::string>& unchecked_paths, bool skip_paths);
  // The steps that run a resolved config, in order; may write files in out_dir. A stage that
  // evaluates leaves OUT/evals.json ({"name": value or {"value", "details"}, ...}), which the
  // runner records.
  std::vector<StageStep> (*steps)(const nlohmann::json& config, const StageRun& run);
};

// The kind named `name`; InputError naming `where` when there is none.
const StageKind& stage_kind(const std::string& name, const std::string& where);
std::vector<std::string> stage_kind_names();

}  // namespace posttrain::recipes
