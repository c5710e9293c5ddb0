// The recipes shipped in recipes/ check as their headers say: tiny_math (the main job) and its
// SFT-only baseline fully, llama3_8b without its model and data paths. tiny_math's evaluation
// problems come from synth's held-out split and all its training problems from the train split.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "recipes/recipe.h"
#include "recipe_test_util.h"

namespace posttrain::recipes {
namespace {

std::string shipped(const std::string& name) { return test_util::repo_file("recipes/" + name); }

TEST(ShippedRecipes, Check) {
  for (const char* name : {"tiny_math.json", "tiny_math_sft_only.json"}) {
    const Recipe r = load_recipe(shipped(name));
    EXPECT_NO_THROW(check_recipe(r, r.num_rounds, /*skip_paths=*/false)) << name;
  }
  const Recipe big = load_recipe(shipped("llama3_8b.json"));
  EXPECT_NO_THROW(check_recipe(big, big.num_rounds, /*skip_paths=*/true));
  EXPECT_FALSE(big.launcher.empty());
}

TEST(ShippedRecipes, TinyMathTrainsOnTheTrainSplitAndEvaluatesOnTheHeldOutOne) {
  const Recipe r = load_recipe(shipped("tiny_math.json"));
  int synth = 0, evals = 0, samples = 0;
  for (int round = 0; round < r.num_rounds; ++round) {
    for (const auto& stage : r.round(round).stages) {
      if (stage.kind == "synth") {
        ++synth;
        EXPECT_EQ(stage.config.at("split"), "train") << stage.where;
      } else if (stage.kind == "eval") {
        ++evals;
        EXPECT_EQ(stage.config.at("math").at("split"), "heldout") << stage.where;
      } else if (stage.kind == "sample") {
        ++samples;
      }
    }
  }
  EXPECT_EQ(evals, r.num_rounds);          // round 0 is the starting point
  EXPECT_EQ(samples, r.num_rounds - 1);    // rejection sampling in every later round
  EXPECT_EQ(synth, r.num_rounds);          // seed data, then each round's fresh problems
}

}  // namespace
}  // namespace posttrain::recipes
