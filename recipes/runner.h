// Runs a recipe round after round. Each stage runs as its own `posttrain` process in
// OUT/round-R/NAME (its resolved config beside it as NAME.config.json); when it exits 0 the
// runner records, in one store transaction, its output checkpoint with its parents, its
// metrics.jsonl lines (training stages; run "RECIPE/round-R/NAME" of the metrics table) and
// the stage as done. Running the same command again after a crash, SIGKILL or Ctrl-C skips
// every stage recorded as done and clears and reruns the one that was cut short, so the final
// store and weights equal an uninterrupted run's (on CPU, where stages are deterministic).
#pragma once

#include <string>
#include <vector>

#include "recipes/recipe.h"

namespace posttrain::recipes {

struct RunOptions {
  std::string out_dir;     // OUT: base/, round-R/NAME/, rounds.jsonl, the store by default
  int rounds = 0;          // rounds to run; 0 = the recipe's num_rounds
  std::string executable;  // the posttrain binary that runs stages ("" = this process's own)
};

struct RunSummary {
  int rounds = 0;
  int stages_run = 0;      // stages this call ran
  int stages_skipped = 0;  // stages found done by an earlier call
  std::string policy;      // the newest policy checkpoint at the end
  std::string store;
};

RunSummary run_recipe(const Recipe& recipe, const RunOptions& options);

}  // namespace posttrain::recipes
