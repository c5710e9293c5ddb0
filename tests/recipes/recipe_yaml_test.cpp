// A recipe written in YAML is the same recipe as in JSON, and its mistakes name their line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/files.h"
#include "recipes/recipe.h"

namespace posttrain::recipes {
namespace {

namespace fs = std::filesystem;

class RecipeYaml : public ::testing::Test {
 protected:
  void SetUp() override { fs::create_directories(dir_); }
  void TearDown() override { posttrain::remove_tree(dir_.string()); }
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }
  std::string load_error(const std::string& path) {
    try {
      load_recipe(path);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  }
  const fs::path dir_ =
      fs::temp_directory_path() / ("posttrain_recipe_yaml_" + std::to_string(::getpid()));
};

TEST_F(RecipeYaml, SameRecipeAsJson) {
  const std::string json = write("r.json", R"({
  // two rounds of SFT from a tiny model
  "name": "micro",
  "model": {"init": {"preset": "tiny", "seed": 0}},
  "num_rounds": 2,
  "rounds": [{"stages": [{"name": "sft", "kind": "sft",
                          "config": {"optimizer": {"lr": 3e-3}, "training": {"max_steps": 3}}}]}]
})");
  const std::string yaml = write("r.yaml",
                                 "# two rounds of SFT from a tiny model\n"
                                 "name: micro\n"
                                 "model:\n"
                                 "  init: {preset: tiny, seed: 0}\n"
                                 "num_rounds: 2\n"
                                 "rounds:\n"
                                 "  - stages:\n"
                                 "      - name: sft\n"
                                 "        kind: sft\n"
                                 "        config:\n"
                                 "          optimizer: {lr: 3e-3}\n"
                                 "          training:\n"
                                 "            max_steps: 3\n");
  const Recipe a = load_recipe(json), b = load_recipe(yaml);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.init, b.init);
  EXPECT_EQ(b.num_rounds, 2);
  ASSERT_EQ(b.rounds.size(), 1u);
  ASSERT_EQ(b.rounds[0].stages.size(), 1u);
  EXPECT_EQ(a.rounds[0].stages[0].name, b.rounds[0].stages[0].name);
  EXPECT_EQ(a.rounds[0].stages[0].kind, b.rounds[0].stages[0].kind);
  EXPECT_EQ(a.rounds[0].stages[0].config, b.rounds[0].stages[0].config);
  EXPECT_TRUE(b.rounds[0].stages[0].config["training"]["max_steps"].is_number_integer());
}

TEST_F(RecipeYaml, MistakesNameTheirLine) {
  // num_rounds on line 3 is out of range.
  const std::string rounds = write("rounds.yml",
                                   "name: micro\nmodel: m\nnum_rounds: 0\n"
                                   "rounds: [{stages: [{name: a, kind: sft, config: {}}]}]\n");
  EXPECT_EQ(load_error(rounds).rfind(rounds + ":3: field 'num_rounds'", 0), 0u)
      << load_error(rounds);
  // The second stage's unknown kind key sits on line 8.
  const std::string stage = write("stage.yaml",
                                  "name: micro\n"
                                  "model: m\n"
                                  "rounds:\n"
                                  "  - stages:\n"
                                  "      - name: a\n"
                                  "        kind: sft\n"
                                  "      - name: b\n"
                                  "        knd: sft\n");
  EXPECT_EQ(load_error(stage).rfind(stage + ":8: field 'rounds[0].stages[1].knd'", 0), 0u)
      << load_error(stage);
  // A syntax error: an unclosed flow sequence.
  const std::string syntax = write("syntax.yaml", "name: micro\nrounds: [1, 2\n");
  EXPECT_NE(load_error(syntax).find(syntax + ":"), std::string::npos) << load_error(syntax);
  EXPECT_NE(load_error(syntax).find("not valid YAML"), std::string::npos) << load_error(syntax);
}

}  // namespace
}  // namespace posttrain::recipes
