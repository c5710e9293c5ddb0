// recipe.launcher: training stages start through an argv prefix (posttrain launch, srun,
// torchrun-style wrappers); other stages run directly.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/files.h"
#include "recipes/recipe.h"
#include "recipe_test_util.h"

namespace posttrain::recipes {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kSftData = test_util::tiny_sft_data();

json one_round(const json& launcher) {
  json sft = {{"data", {{"sources", {{{"path", kSftData}}}}, {"max_seq_len", 128}}},
              {"training", {{"max_steps", 2}, {"micro_batch_size", 2}}}};
  json avg = {{"inputs", {"${stage:sft}", "${stage:sft}"}}};
  json doc = {{"name", "launched"},
              {"model", {{"init", {{"preset", "tiny"}, {"seed", 0}}}}},
              {"num_rounds", 1},
              {"rounds",
               {{{"stages",
                  {{{"name", "sft"}, {"kind", "sft"}, {"config", sft}},
                   {{"name", "avg"}, {"kind", "average"}, {"config", avg}}}}}}}};
  if (!launcher.is_null()) doc["launcher"] = launcher;
  return doc;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(RecipeLauncher, MustBeAListOfStrings) {
  for (const json& bad : {json("srun"), json::array({1}), json::array({""})}) {
    try {
      parse_recipe(one_round(bad), "r.json");
      ADD_FAILURE() << "accepted launcher " << bad.dump();
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("launcher"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(parse_recipe(one_round(json::array({"posttrain", "launch", "--nproc", "2", "--"})),
                         "r.json")
                .launcher.size(),
            5u);
}

TEST(RecipeLauncher, TrainingStagesRunThroughItOthersDirectly) {
  const fs::path root = fs::temp_directory_path() / ("posttrain_launcher_" + std::to_string(::getpid()));
  posttrain::remove_tree(root.string());
  fs::create_directories(root);
  // A wrapper that notes its arguments and runs them, as srun or a launcher would.
  const std::string wrapper = (root / "wrap.sh").string(), log = (root / "wrap.log").string();
  std::ofstream(wrapper) << "#!/bin/sh\necho \"$@\" >> '" << log << "'\nexec \"$@\"\n";
  ::chmod(wrapper.c_str(), 0755);
  const std::string recipe = (root / "r.json").string();
  std::ofstream(recipe) << one_round(json::array({wrapper})).dump(2);
  const std::string out = (root / "out").string();
  const std::string cmd = std::string(POSTTRAIN_BIN) + " recipe run " + recipe + " --output " +
                          out + " > " + (root / "run.log").string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp((root / "run.log").string());
  // One line: the SFT stage, given as `POSTTRAIN sft --config ...`; init and average ran
  // directly.
  const std::string noted = slurp(log);
  EXPECT_EQ(std::count(noted.begin(), noted.end(), '\n'), 1) << noted;
  EXPECT_EQ(noted.rfind(std::string(POSTTRAIN_BIN) + " sft", 0), 0u) << noted;
  EXPECT_NE(noted.find(" sft --config "), std::string::npos) << noted;
  EXPECT_TRUE(fs::exists(out + "/round-0/avg/config.json"));
  posttrain::remove_tree(root.string());
}

}  // namespace
}  // namespace posttrain::recipes
