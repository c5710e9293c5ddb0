// Config validation: unknown keys, wrong types, missing paths and --set overrides each give one
// error naming the key; defaults are filled in.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "core/train/config.h"
#include "core/train/trainer_options.h"

namespace posttrain::core {
namespace {

ConfigSchema test_schema() {
  ConfigSchema s;
  s.add({"model", "path", ConfigType::kPath, nullptr, true, {}, "model folder"});
  add_trainer_keys(&s);
  return s;
}

std::string error_of(const ConfigSchema& s, const nlohmann::json& j,
                     const std::vector<std::string>& sets = {}) {
  try {
    s.resolve(j, sets, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

nlohmann::json minimal() {
  return {{"model", {{"path", POSTTRAIN_FIXTURES}}}, {"output", {{"dir", "/tmp/x"}}}};
}

TEST(TrainConfig, FillsDefaults) {
  auto c = test_schema().resolve(minimal(), {}, "cfg.json");
  EXPECT_DOUBLE_EQ(c["optimizer"]["lr"].get<double>(), 1e-5);
  EXPECT_EQ(c["schedule"]["decay"], "cosine");
  EXPECT_EQ(c["training"]["micro_batch_size"], 1);
  TrainerOptions o = trainer_options_from_config(c);
  EXPECT_EQ(o.dir, "/tmp/x");
  EXPECT_EQ(o.grad_accum_steps, 1);
}

TEST(TrainConfig, UnknownKeyNamesIt) {
  auto j = minimal();
  j["optimizer"]["lrr"] = 0.1;
  const std::string e = error_of(test_schema(), j);
  EXPECT_NE(e.find("cfg.json"), std::string::npos) << e;
  EXPECT_NE(e.find("optimizer.lrr"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown"), std::string::npos) << e;
}

TEST(TrainConfig, UnknownSectionNamesIt) {
  auto j = minimal();
  j["optimiser"] = nlohmann::json::object();
  EXPECT_NE(error_of(test_schema(), j).find("'optimiser'"), std::string::npos);
}

TEST(TrainConfig, WrongTypeNamesKeyAndType) {
  auto j = minimal();
  j["training"]["micro_batch_size"] = "four";
  const std::string e = error_of(test_schema(), j);
  EXPECT_NE(e.find("training.micro_batch_size"), std::string::npos) << e;
  EXPECT_NE(e.find("integer"), std::string::npos) << e;
  j = minimal();
  j["training"]["activation_checkpointing"] = 1;
  EXPECT_NE(error_of(test_schema(), j).find("training.activation_checkpointing"),
            std::string::npos);
}

TEST(TrainConfig, MissingPathAndMissingRequiredKey) {
  auto j = minimal();
  j["model"]["path"] = "/no/such/model";
  std::string e = error_of(test_schema(), j);
  EXPECT_NE(e.find("model.path"), std::string::npos) << e;
  EXPECT_NE(e.find("does not exist"), std::string::npos) << e;
  j = minimal();
  j.erase("output");
  e = error_of(test_schema(), j);
  EXPECT_NE(e.find("output.dir"), std::string::npos) << e;
  EXPECT_NE(e.find("missing"), std::string::npos) << e;
}

TEST(TrainConfig, ChoicesAndRangesAreChecked) {
  auto j = minimal();
  j["schedule"]["decay"] = "exponential";
  EXPECT_NE(error_of(test_schema(), j).find("schedule.decay"), std::string::npos);
  j = minimal();
  j["optimizer"]["lr"] = -1;
  EXPECT_NE(error_of(test_schema(), j).find("optimizer.lr"), std::string::npos);
}

TEST(TrainConfig, SetOverridesAreTypedAndRepeatable) {
  auto c = test_schema().resolve(
      minimal(), {"optimizer.lr=0.001", "output.dir=123", "training.seed=7", "training.seed=8"},
      "cfg.json");
  EXPECT_DOUBLE_EQ(c["optimizer"]["lr"].get<double>(), 0.001);
  EXPECT_EQ(c["output"]["dir"], "123");  // a string key keeps the text
  EXPECT_EQ(c["training"]["seed"], 8);   // the last one wins
  EXPECT_NE(error_of(test_schema(), minimal(), {"optimizer.lrate=1"}).find("optimizer.lrate"),
            std::string::npos);
  EXPECT_NE(error_of(test_schema(), minimal(), {"training.epochs=two"}).find("training.epochs"),
            std::string::npos);
  EXPECT_NE(error_of(test_schema(), minimal(), {"no_equals_sign"}).find("section.key=value"),
            std::string::npos);
}

TEST(TrainConfig, LoadAcceptsCommentsAndDescribeListsEveryKey) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("posttrain_train_config_test_" + std::to_string(::getpid()) + ".json");
  {
    std::ofstream out(path);
    out << "// run: posttrain sft --config this.json\n{\"model\": {\"path\": \""
        << POSTTRAIN_FIXTURES << "\"}, /* inline */ \"output\": {\"dir\": \"o\"}}\n";
  }
  auto s = test_schema();
  auto c = s.load(path.string(), {});
  EXPECT_EQ(c["output"]["dir"], "o");
  const std::string help = s.describe();
  for (const auto& k : s.keys()) {
    EXPECT_NE(help.find(k.section + "." + k.key), std::string::npos) << k.key;
  }
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace posttrain::core
