// A recipe: the Llama 3 post-training loop, round after round, from one JSON file (`//` and
// `/* */` comments allowed, like the stage configs).
//
//   {
//     "name": "tiny_math",                      // the run's name in the store (resume key)
//     "model": {"init": {"preset": "tiny", "seed": 0}},   // or "model": "path/to/hf/folder"
//     "store": "store.db",                      // relative to the output folder, or absolute
//     "num_rounds": 3,                          // --rounds overrides
//     "launcher": ["posttrain", "launch", "--nproc", "8", "--"],  // optional, training stages
//     "rounds": [ {"stages": [...]}, {"stages": [...]} ]  // round r uses rounds[min(r, n-1)]
//   }
//
// A stage is {"name": N, "kind": K, "config": {...}}; names are unique within a round. Kinds
// and their config (recipes/stage_kinds.h): "sft" (the keys of `posttrain sft --config`),
// "synth" (the command-line options of `posttrain synth` as a JSON object), "average"
// ({"inputs": [...], "weights": [...]}), "eval" (recipes/evals.h). Strings in a config may hold
// placeholders (recipes/placeholders.h): ${policy}, ${previous_policy}, ${reward_model},
// ${round}, ${store}, ${out}, ${run_dir}, ${stage:NAME}.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain::recipes {

struct StageSpec {
  std::string name;
  std::string kind;
  nlohmann::json config = nlohmann::json::object();
  std::string where;  // "rounds[1].stages[2]", for messages
};

struct RoundSpec {
  std::vector<StageSpec> stages;
};

struct Recipe {
  std::string source;  // the file it was read from ("" when built in code)
  std::string name;
  std::string model_path;              // a Hugging Face folder, or "" with init
  std::optional<nlohmann::json> init;  // {"preset", "seed"?, "tokenizer"?} for `posttrain init`
  std::string store = "store.db";
  int num_rounds = 1;
  std::vector<RoundSpec> rounds;
  // What starts the training stages (sft, reward, dpo) on several GPUs or nodes: an argv prefix
  // put before `POSTTRAIN stage-args...`, e.g. ["posttrain", "launch", "--nproc", "8", "--"]
  // or ["srun", "--ntasks-per-node=8"]; an element "posttrain" is this program. Empty = run
  // the stage directly.
  std::vector<std::string> launcher;

  // The stages of round r (the last round's list repeats).
  const RoundSpec& round(int r) const;
};

// Parses a recipe object; every unknown key, wrong type or malformed stage is an InputError
// naming `source` and the key ("rounds[0].stages[1].kind"). overrides: "key=value" for the
// top-level keys name, store, num_rounds, model (value parsed as JSON when valid, else a string).
Recipe parse_recipe(const nlohmann::json& doc, const std::string& source,
                    const std::vector<std::string>& overrides = {});
// Reads and parses a recipe file.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides = {});

// Checks what can be known before running: stage configs against their kind's schema,
// placeholders that name later or unknown stages, stages in an impossible order (a stage that
// needs a reward model before any reward stage), held-out eval data that a training stage
// would read (recipes/heldout.h), and missing input paths unless skip_paths.
// Throws InputError naming the key. rounds: how many rounds will run.
void check_recipe(const Recipe& recipe, int rounds, bool skip_paths);

}  // namespace posttrain::recipes
