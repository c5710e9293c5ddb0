// Config keys of `posttrain sft` that only mean something with another key: data.store_weight and
// data.store_round without data.store are errors naming the key, whether they come from the
// config file or from --set, and even when the value equals the default (store_weight 1.0); left
// out, they are no error and store_weight resolves to its default. Checked on the schema (file
// and --set origins, the message) and once through the CLI (one line, nothing written).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/files.h"
#include "sft/sft.h"
#include "tests/cli_run.h"

namespace fs = std::filesystem;

namespace posttrain::sft {
namespace {

using Json = nlohmann::json;

const std::string kJsonl = std::string(POSTTRAIN_FIXTURES) + "/../../sft/examples/tiny_sft.jsonl";

// A valid config on the committed example data; `data` is merged into its data section.
Json config(const Json& data = Json::object()) {
  Json c = {{"model", {{"path", std::string(POSTTRAIN_FIXTURES)}}},
            {"data", {{"sources", {kJsonl}}}},
            {"output", {{"dir", "/nonexistent/out"}}}};
  for (auto it = data.begin(); it != data.end(); ++it) c["data"][it.key()] = it.value();
  return c;
}

// The message of the InputError that resolving throws, or "" when it resolves.
std::string error_of(const Json& c, const std::vector<std::string>& sets = {}) {
  try {
    sft_schema().resolve(c, sets, "cfg.json");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(SftConfig, StoreWeightWithoutAStoreIsAnErrorNamingTheKey) {
  // From the file, with the default's value too: being given is the mistake, not the value.
  for (double w : {2.0, 1.0}) {
    const std::string e = error_of(config({{"store_weight", w}}));
    EXPECT_TRUE(contains(e, "cfg.json: field 'data.store_weight'")) << w << ": " << e;
    EXPECT_TRUE(contains(e, "only used together with data.store, which is not set")) << e;
  }
  // From --set (1 and 1.0 both parse as numbers); the message names --set as the origin.
  for (const char* set : {"data.store_weight=1.0", "data.store_weight=1", "data.store_weight=3"}) {
    const std::string e = error_of(config(), {set});
    EXPECT_TRUE(contains(e, "--set: field 'data.store_weight'")) << set << ": " << e;
    EXPECT_TRUE(contains(e, "data.store")) << e;
  }
}

TEST(SftConfig, StoreRoundWithoutAStoreIsAnErrorNamingTheKey) {
  std::string e = error_of(config({{"store_round", 1}}));
  EXPECT_TRUE(contains(e, "cfg.json: field 'data.store_round'")) << e;
  EXPECT_TRUE(contains(e, "data.store,")) << e;
  e = error_of(config(), {"data.store_round=2"});
  EXPECT_TRUE(contains(e, "--set: field 'data.store_round'")) << e;
}

TEST(SftConfig, StoreKeysLeftOutOrWithAStoreAreFine) {
  // Not given: no error, the default weight.
  Json resolved = sft_schema().resolve(config(), {}, "cfg.json");
  EXPECT_EQ(resolved["data"]["store_weight"].get<double>(), 1.0);
  EXPECT_TRUE(resolved["data"]["store_round"].is_null());
  EXPECT_EQ(sft_data_options(resolved).store_weight, 1.0);
  EXPECT_TRUE(sft_data_options(resolved).store.empty());
  // Given with a store (any existing path passes the schema; the store is opened later), from
  // the file or from --set, including the store itself from --set.
  const Json with_store = config({{"store", kJsonl}, {"store_round", 1}, {"store_weight", 2.5}});
  resolved = sft_schema().resolve(with_store, {}, "cfg.json");
  EXPECT_EQ(sft_data_options(resolved).store_weight, 2.5);
  EXPECT_EQ(sft_data_options(resolved).store_round, 1);
  resolved = sft_schema().resolve(
      config(), {"data.store=" + kJsonl, "data.store_round=4", "data.store_weight=1"}, "cfg.json");
  EXPECT_EQ(sft_data_options(resolved).store, kJsonl);
  EXPECT_EQ(sft_data_options(resolved).store_round, 4);
  EXPECT_EQ(sft_data_options(resolved).store_weight, 1.0);
  // The store without its round is still refused (a different rule: the round is required).
  EXPECT_THROW(sft_data_options(sft_schema().resolve(config({{"store", kJsonl}}), {}, "cfg.json")),
               InputError);
}

TEST(SftConfig, ExplicitNullForAKeyWithADefaultIsATypeError) {
  // null is "unset" only for keys without a default; elsewhere it is a wrong type, not a crash
  // later when the value is read.
  const std::string e = error_of(config({{"store_weight", nullptr}}));
  EXPECT_TRUE(contains(e, "field 'data.store_weight': expected number, got null")) << e;
}

TEST(SftConfig, CliRefusesStoreWeightWithoutAStoreInOneLine) {
  const fs::path dir =
      fs::temp_directory_path() / ("posttrain_sft_config_" + std::to_string(::getpid()));
  posttrain::remove_tree(dir.string());
  fs::create_directories(dir);
  Json c = config();
  c["output"]["dir"] = (dir / "out").string();
  const std::string cfg = (dir / "cfg.json").string();
  std::ofstream(cfg) << c.dump(2);
  const auto r = testing::run_cli("sft --config " + cfg + " --set data.store_weight=1.0");
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_TRUE(contains(r.output, "'data.store_weight'")) << r.output;
  EXPECT_TRUE(contains(r.output, "data.store, which is not set")) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out"));
  const auto help = testing::run_cli("sft --help");
  EXPECT_TRUE(
      contains(help.output, "data.store_weight (number, default 1.0, only with data.store)"))
      << help.output;
  posttrain::remove_tree(dir.string());
}

// The example config in YAML is the JSON example: `--print-config` of both is the same resolved
// config (run from the repository root, where the examples' relative data path points).
TEST(SftConfig, YamlExampleResolvesLikeTheJsonExample) {
  const fs::path before = fs::current_path();
  fs::current_path(fs::path(POSTTRAIN_FIXTURES) / ".." / "..");
  const std::string model =
      " --set model.path=" + std::string(POSTTRAIN_FIXTURES) + " --print-config";
  const auto a = testing::run_cli("sft --config sft/examples/tiny_sft.json" + model);
  const auto b = testing::run_cli("sft --config sft/examples/tiny_sft.yaml" + model);
  fs::current_path(before);
  ASSERT_EQ(a.code, 0) << a.output;
  ASSERT_EQ(b.code, 0) << b.output;
  EXPECT_EQ(Json::parse(a.output), Json::parse(b.output));
  EXPECT_DOUBLE_EQ(Json::parse(b.output)["optimizer"]["lr"].get<double>(), 0.003);
}

// Every training command reads its config through the same loader: a YAML mistake names the file,
// the line and the key; a bad --set value names --set (README: "--set: field ...").
TEST(SftConfig, EveryStageCommandReportsYamlLinesAndSetErrors) {
  const fs::path dir =
      fs::temp_directory_path() / ("posttrain_sft_config_yaml_" + std::to_string(::getpid()));
  posttrain::remove_tree(dir.string());
  fs::create_directories(dir);
  const std::string bad = (dir / "bad.yaml").string();
  std::ofstream(bad) << "model:\n  path: " << POSTTRAIN_FIXTURES << "\noptimizer:\n  lrr: 1\n";
  const std::string syntax = (dir / "syntax.yml").string();
  std::ofstream(syntax) << "model:\n  path: [unclosed\n";
  for (const std::string command : {"sft", "reward train", "dpo train"}) {
    auto r = testing::run_cli(command + " --config " + bad);
    EXPECT_NE(r.code, 0) << command;
    EXPECT_TRUE(contains(r.output, bad + ":4: field 'optimizer.lrr': unknown config key"))
        << command << ": " << r.output;
    r = testing::run_cli(command + " --config " + syntax);
    EXPECT_NE(r.code, 0) << command;
    EXPECT_TRUE(contains(r.output, syntax + ":")) << command << ": " << r.output;
    EXPECT_TRUE(contains(r.output, "not valid YAML")) << command << ": " << r.output;
  }
  Json c = config();
  c["output"]["dir"] = (dir / "out").string();
  const std::string cfg = (dir / "cfg.json").string();
  std::ofstream(cfg) << c.dump(2);
  const auto r = testing::run_cli("sft --config " + cfg + " --set training.epochs=two");
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(contains(r.output, "--set: field 'training.epochs': expected integer")) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out"));
  posttrain::remove_tree(dir.string());
}

}  // namespace
}  // namespace posttrain::sft
