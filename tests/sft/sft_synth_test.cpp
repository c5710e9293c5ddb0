// One command's output into the next: `synth math --store` keeps checked dialogues and selects
// them for its round, and `sft` with data.store_round trains on exactly those (a problem whose
// candidates all fail is not kept, so it is not read).
#ifdef POSTTRAIN_SFT_WITH_STORE

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/files.h"
#include "datastore/store.h"
#include "tests/cli_run.h"

namespace fs = std::filesystem;

namespace posttrain::sft {
namespace {

using Json = nlohmann::json;

std::vector<Json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<Json> rows;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) rows.push_back(Json::parse(line));
  }
  return rows;
}

TEST(SftFromSynth, SynthIntoAStoreThenSftOnItsRound) {
  const std::string root =
      (fs::temp_directory_path() / ("posttrain_sft_synth_" + std::to_string(::getpid())))
          .string();
  posttrain::remove_tree(root);
  fs::create_directories(root);
  auto run = [](const std::string& args) { return testing::run_cli(args); };
  auto r = run("init --preset tiny --seed 5 --output " + root + "/model");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run("synth math --count 3 --seed 3 --out " + root + "/p.jsonl");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto problems = read_jsonl(root + "/p.jsonl");
  ASSERT_EQ(problems.size(), 3u);
  // Problems 0 and 1 get their reference solution (kept); problem 2 only a wrong answer.
  {
    std::ofstream cand(root + "/cand.jsonl");
    for (int i = 0; i < 3; ++i) {
      Json attempt = i < 2 ? problems[i]["reference_solution"] : Json("Answer: -999999");
      cand << Json{{"id", problems[i]["id"]}, {"attempts", {attempt}}}.dump() << "\n";
    }
  }
  const std::string db = root + "/s.db";
  r = run("synth math --count 3 --seed 3 --max-attempts 1 --candidates " + root +
          "/cand.jsonl --store " + db + " --round 2");
  ASSERT_EQ(r.code, 0) << r.output;
  {
    auto store = datastore::Store::open(db);
    EXPECT_EQ(store.dialogues().size(), 2u);
    EXPECT_EQ(store.selected_samples(2).size(), 2u);
    EXPECT_TRUE(store.selected_samples(0).empty());
  }
  Json c = {{"model", {{"path", root + "/model"}}},
            {"data", {{"store", db}, {"store_round", 2}, {"max_seq_len", 512}}},
            {"optimizer", {{"lr", 0.01}}},
            {"schedule", {{"warmup_steps", 1}, {"decay", "constant"}}},
            {"training", {{"max_steps", 2}, {"micro_batch_size", 2}, {"threads", 1}}},
            {"output", {{"dir", root + "/sft"}}}};
  std::ofstream(root + "/sft.json") << c.dump(2);
  r = run("sft --config " + root + "/sft.json");
  ASSERT_EQ(r.code, 0) << r.output;
  const Json data = Json::parse(r.output.substr(0, r.output.find('\n')));
  ASSERT_EQ(data["event"], "data") << r.output;
  EXPECT_EQ(data["sources"][0]["read"], 2) << r.output;
  EXPECT_EQ(data["train_examples"], 2) << r.output;
  EXPECT_TRUE(fs::exists(root + "/sft/model.safetensors"));
  posttrain::remove_tree(root);
}

}  // namespace
}  // namespace posttrain::sft

#endif  // POSTTRAIN_SFT_WITH_STORE
