// Config validation: unknown keys, wrong types, missing paths and --set overrides each give one
// error naming the key; defaults are filled in.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/files.h"
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

// A bad value given with --set is --set's error (README: "--set: field ..."), not the file's.
TEST(TrainConfig, BadSetValueBlamesSet) {
  const std::string e = error_of(test_schema(), minimal(), {"training.epochs=two"});
  EXPECT_EQ(e.rfind("--set: field 'training.epochs': expected integer", 0), 0u) << e;
  const std::string range = error_of(test_schema(), minimal(), {"training.micro_batch_size=0"});
  EXPECT_EQ(range.rfind("--set: field 'training.micro_batch_size': must be in", 0), 0u) << range;
  // The same bad value in the file still names the file.
  auto j = minimal();
  j["training"]["epochs"] = "two";
  EXPECT_EQ(error_of(test_schema(), j).rfind("cfg.json: field 'training.epochs'", 0), 0u);
  // A --set into a section the file gives as a non-object names the file's section.
  j = minimal();
  j["optimizer"] = 5;
  EXPECT_EQ(
      error_of(test_schema(), j, {"optimizer.lr=0.1"}).rfind("cfg.json: field 'optimizer'", 0), 0u);
}

class TrainConfigYaml : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    const auto path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }
  std::string load_error(const std::string& path, const std::vector<std::string>& sets = {}) {
    try {
      test_schema().load(path, sets);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  void SetUp() override { std::filesystem::create_directories(dir_); }
  // posttrain::remove_tree: libtorch's std::filesystem::remove_all is not safe (common/files.h).
  void TearDown() override { posttrain::remove_tree(dir_.string()); }
  const std::filesystem::path dir_ = std::filesystem::temp_directory_path() /
                                     ("posttrain_config_yaml_" + std::to_string(::getpid()));
};

TEST_F(TrainConfigYaml, SameConfigInJsonAndYamlResolvesTheSame) {
  const std::string fixtures = POSTTRAIN_FIXTURES;
  const std::string json = write("c.json", "{\"model\": {\"path\": \"" + fixtures +
                                               "\"},\n \"optimizer\": {\"lr\": 2e-5, "
                                               "\"weight_decay\": 0},\n \"schedule\": {\"decay\": "
                                               "\"linear\", \"warmup_steps\": 3},\n \"training\": "
                                               "{\"max_steps\": 40, \"activation_checkpointing\": "
                                               "true},\n \"output\": {\"dir\": \"out\"}}\n");
  const std::string yaml = write("c.yaml",
                                 "# run: posttrain sft --config c.yaml\n"
                                 "model:\n  path: " + fixtures + "\n"
                                 "optimizer:\n  lr: 2e-5\n  weight_decay: 0\n"
                                 "schedule: {decay: linear, warmup_steps: 3}\n"
                                 "training:\n  max_steps: 40\n  activation_checkpointing: true\n"
                                 "output:\n  dir: out\n");
  const auto a = test_schema().load(json, {"training.seed=3"});
  const auto b = test_schema().load(yaml, {"training.seed=3"});
  EXPECT_EQ(a, b);
  EXPECT_DOUBLE_EQ(b["optimizer"]["lr"].get<double>(), 2e-5);
  EXPECT_TRUE(b["optimizer"]["weight_decay"].is_number_integer());  // as JSON's 0
  EXPECT_EQ(b["training"]["max_steps"], 40);
}

TEST_F(TrainConfigYaml, SyntaxErrorNamesTheLine) {
  // Line 3 maps a key at a deeper indent under a scalar value: invalid YAML.
  const std::string path = write("bad.yml", "model:\n  path: m\n    oops: 1\n");
  const std::string e = load_error(path);
  EXPECT_EQ(e.rfind(path + ":3: not valid YAML", 0), 0u) << e;
}

TEST_F(TrainConfigYaml, SchemaErrorsNameKeyAndLine) {
  const std::string fixtures = POSTTRAIN_FIXTURES;
  const std::string path = write("types.yaml",
                                 "model:\n  path: " + fixtures + "\n"
                                 "optimizer:\n  lr: fast\n");
  // Line 4 holds optimizer.lr.
  const std::string type_error = load_error(path);
  EXPECT_EQ(type_error.rfind(path + ":4: field 'optimizer.lr': expected number, got string", 0), 0u)
      << type_error;
  const std::string unknown = write("unknown.yaml",
                                    "model:\n  path: " + fixtures + "\n\ntraining:\n  epoks: 2\n");
  EXPECT_EQ(load_error(unknown).rfind(unknown + ":5: field 'training.epoks': unknown config key",
                                      0),
            0u)
      << load_error(unknown);
  // A quoted number stays a string, as in JSON.
  const std::string quoted = write("quoted.yaml",
                                   "model:\n  path: " + fixtures + "\ntraining:\n  epochs: '2'\n");
  EXPECT_NE(load_error(quoted).find(":4: field 'training.epochs': expected integer"),
            std::string::npos)
      << load_error(quoted);
  // A bad --set value on a YAML file still blames --set, with no line of the file.
  EXPECT_EQ(load_error(write("ok.yaml", "model:\n  path: " + fixtures + "\n"),
                       {"optimizer.lr=-1"})
                .rfind("--set: field 'optimizer.lr'", 0),
            0u);
}

}  // namespace
}  // namespace posttrain::core
