// `posttrain recipe run FILE --output DIR [--rounds N] [--set key=value ...]` and
// `posttrain recipe check FILE [--rounds N] [--skip-paths]`: the round-by-round loop from one
// file (recipes/recipe.h for the format, recipes/runner.h for resume).
#include <iostream>

#include "app/command.h"
#include "app/options.h"
#include "common/error.h"
#include "recipes/recipe.h"
#include "recipes/runner.h"

namespace posttrain::app {
namespace {

const char* kUsage =
    "usage: posttrain recipe run FILE --output DIR [--rounds N] [--set key=value ...]\n"
    "       posttrain recipe check FILE [--rounds N] [--skip-paths]\n\n"
    "A recipe is JSON (// comments allowed): a starting model, a store, and per round the\n"
    "stages in order, each with its own config (the keys of `posttrain sft --config`; synth's\n"
    "command-line options as an object; average's inputs). `run` runs round after round, each\n"
    "stage as its own posttrain process in DIR/round-R/NAME, recording each finished stage in\n"
    "the store; the same command again continues after the last finished stage. `check`\n"
    "validates everything without running. See recipes/README.md.";

int run_recipe_command(const std::vector<std::string>& args) {
  po::options_description desc("recipe options");
  add_output_option(desc, "run folder (checkpoints, stage folders, rounds.jsonl, the store)");
  desc.add_options()("action", po::value<std::string>(), "run or check (positional)")(
      "file", po::value<std::string>(), "the recipe file (positional)")(
      "rounds", po::value<int>(), "rounds to run (default: the recipe's num_rounds)")(
      "set", po::value<std::vector<std::string>>()->composing(),
      "override a top-level key: --set num_rounds=2 (name, store, num_rounds, model)")(
      "skip-paths", po::bool_switch(), "check: do not require input paths to exist");
  po::variables_map vm;
  if (!parse_options(kUsage, desc, args, &vm, {{"action", 1}, {"file", 1}})) return 0;
  if (!vm.count("action") || !vm.count("file")) {
    throw UsageError("give an action (run or check) and a recipe file (see --help)");
  }
  const std::string action = vm["action"].as<std::string>();
  std::vector<std::string> sets;
  if (vm.count("set")) sets = vm["set"].as<std::vector<std::string>>();
  const recipes::Recipe recipe = recipes::load_recipe(vm["file"].as<std::string>(), sets);
  int rounds = recipe.num_rounds;
  if (vm.count("rounds")) {
    rounds = vm["rounds"].as<int>();
    if (rounds < 1 || rounds > 1000) throw UsageError("--rounds must be in [1, 1000]");
  }
  if (action == "check") {
    recipes::check_recipe(recipe, rounds, vm["skip-paths"].as<bool>());
    std::cout << "recipe " << recipe.name << ": ok (" << rounds << " rounds)\n";
    return 0;
  }
  if (action != "run") throw UsageError("unknown action '" + action + "' (run or check)");
  if (vm["skip-paths"].as<bool>()) throw UsageError("--skip-paths is for check only");
  recipes::RunOptions options;
  options.out_dir = require_output(vm, "recipe run");
  options.rounds = rounds;
  const recipes::RunSummary s = recipes::run_recipe(recipe, options);
  std::cout << "recipe " << recipe.name << ": " << s.rounds << " rounds, " << s.stages_run
            << " stages run, " << s.stages_skipped << " done earlier; policy " << s.policy
            << "; store " << s.store << "\n";
  return 0;
}

}  // namespace

POSTTRAIN_COMMAND("recipe", "run or check a round-by-round recipe", run_recipe_command);

}  // namespace posttrain::app
