// What the recipe runner knows of each kind of stage: the defaults it fills in, how a config
// is checked before anything runs, which `posttrain` command runs it, and what it produces.
// Every stage runs as its own `posttrain` process, exactly as a user would run it alone, so a
// stage behaves the same inside and outside a recipe and a crash stays inside its process.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain::recipes {

struct StageRun {
  std::string out_dir;  // this stage's folder (created empty by the runner)
  std::string store;
  int round = 0;
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
  // The arguments after `posttrain` that run a resolved config; may write files in out_dir.
  std::vector<std::string> (*command)(const nlohmann::json& config, const StageRun& run);
};

// The kind named `name`; InputError naming `where` when there is none.
const StageKind& stage_kind(const std::string& name, const std::string& where);
std::vector<std::string> stage_kind_names();

}  // namespace posttrain::recipes
