// `posttrain reward train` and `reward score` end to end on the tiny preset: config errors are
// one line naming the key; a model trained on pairs that differ in one property (the chosen
// response is the digit the prompt asks for, the rejected another) ranks held-out pairs above 90%;
// metrics, checkpoints and the final folder are written as SFT's, near duplicates are counted,
// and resuming repeats the losses; the saved model scores its pairs with `reward score`, and
// (where Python has transformers) transformers' AutoModelForSequenceClassification gives the same
// rewards from the saved folder.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "core/checkpoint/safetensors.h"
#include "core/train/metrics.h"
#include "tests/cli_run.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace posttrain::reward {
namespace {

using Ran = testing::CliRun;
Ran run(const std::string& args) { return testing::run_cli(args); }

// The step and eval lines of a metrics file (not the data and final event lines).
std::vector<json> training_lines(const std::string& path) {
  std::vector<json> out;
  for (const auto& l : core::read_metrics(path)) {
    if (!core::is_event_line(l)) out.push_back(l);
  }
  return out;
}

// Pairs that differ in one property: the chosen response is the digit the prompt asks for, the
// rejected one another digit. (Single-digit sums, right vs wrong answer, did not get past ~75%
// held-out accuracy within a few hundred steps on the tiny preset from scratch; this property
// reaches 100% by step ~100.) A seeded tenth of the pairs is held out for eval.
void write_pairs(const std::string& train, const std::string& eval, int duplicates) {
  std::vector<json> rows;
  for (int a = 0; a < 10; ++a) {
    for (int w = 0; w < 10; ++w) {
      if (w == a) continue;
      for (const char* form : {"Say %d.", "Repeat %d"}) {
        char prompt[32];
        std::snprintf(prompt, sizeof prompt, form, a);
        rows.push_back({{"prompt", prompt},
                        {"chosen", std::to_string(a)},
                        {"rejected", std::to_string(w)}});
      }
    }
  }
  std::mt19937 rng(7);
  std::shuffle(rows.begin(), rows.end(), rng);
  std::ofstream t(train), e(eval);
  for (size_t i = 0; i < rows.size(); ++i) (i % 10 == 0 ? e : t) << rows[i].dump() << "\n";
  // Pairs whose responses are the same text (up to case and spacing): dropped and counted.
  for (int i = 0; i < duplicates; ++i) {
    t << json{{"prompt", "Say 2."}, {"chosen", "Two"}, {"rejected", " two "}}.dump() << "\n";
  }
}

class RewardCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = (fs::temp_directory_path() / ("posttrain_reward_cli_" + std::to_string(::getpid())))
                .string();
    posttrain::remove_tree(root_);
    fs::create_directories(root_);
    Ran r = run("init --preset tiny --seed 3 --output " + root_ + "/model");
    ASSERT_EQ(r.code, 0) << r.output;
    write_pairs(root_ + "/train.jsonl", root_ + "/eval.jsonl", 3);
  }
  static void TearDownTestSuite() { posttrain::remove_tree(root_); }

  std::string write_config(const std::string& name, const json& training) {
    json c = {{"model", {{"path", root_ + "/model"}}},
              {"data",
               {{"sources", {root_ + "/train.jsonl"}},
                {"eval_path", root_ + "/eval.jsonl"},
                {"max_seq_len", 64}}},
              {"optimizer", {{"lr", 0.001}, {"weight_decay", 0.0}}},
              {"schedule", {{"warmup_steps", 10}, {"decay", "constant"}}},
              {"training", {{"micro_batch_size", 16}, {"threads", 2}, {"seed", 1}}},
              {"output", {{"dir", root_ + "/" + name}}}};
    for (auto it = training.begin(); it != training.end(); ++it) {
      c["training"][it.key()] = it.value();
    }
    const std::string path = root_ + "/" + name + ".json";
    std::ofstream(path) << "// test config\n" << c.dump(2);
    return path;
  }

  static std::string root_;
};
std::string RewardCli::root_;

TEST_F(RewardCli, ConfigErrorsAreOneLineNamingTheKey) {
  const std::string cfg = write_config("bad", {{"max_steps", 1}});
  Ran r = run("reward train --config " + cfg + " --set loss.marginn=true");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("loss.marginn"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  r = run("reward train --config " + cfg + " --set data.min_strength=great");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("data.min_strength"), std::string::npos) << r.output;
  r = run("reward train --config " + cfg + " --set data.store_rounds=[1]");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("data.store_rounds"), std::string::npos) << r.output;
  r = run("reward train --help");
  EXPECT_EQ(r.code, 0);
  for (const char* key : {"data.layout", "data.min_strength", "data.near_duplicate",
                          "loss.margin", "loss.center_rewards_coefficient", "training.max_steps"}) {
    EXPECT_NE(r.output.find(key), std::string::npos) << key;
  }
  r = run("reward bogus");
  EXPECT_NE(r.code, 0);
  // A bad data row: one line naming the file, line and field; nothing trained.
  std::ofstream(root_ + "/bad.jsonl") << R"({"prompt":"a","chosen":"x","rejected":"y"})" "\n"
                                      << R"({"prompt":"b","chosen":"x"})" "\n";
  r = run("reward train --config " + cfg + " --set 'data.sources=[\"" + root_ +
          "/bad.jsonl\"]'");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("bad.jsonl:2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rejected"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(root_ + "/bad/model.safetensors"));
}

TEST_F(RewardCli, LearnsWhichAnswerIsRightOnHeldOutPairs) {
  const std::string cfg = write_config("arith", {{"max_steps", 200}, {"eval_every", 50}});
  Ran r = run("reward train --config " + cfg);
  ASSERT_EQ(r.code, 0) << r.output;
  const auto data = json::parse(r.output.substr(0, r.output.find('\n')));
  EXPECT_EQ(data["event"], "data");
  EXPECT_EQ(data["layout"], "one_row");
  EXPECT_EQ(data["sources"][0]["near_duplicate_pairs"], 3) << data.dump();
  EXPECT_EQ(data["eval_pairs"].get<int64_t>(), 18);
  const auto lines = training_lines(root_ + "/arith/metrics.jsonl");
  double eval_accuracy = -1;
  for (const auto& l : lines) {
    if (l.contains("eval_accuracy")) eval_accuracy = l["eval_accuracy"].get<double>();
  }
  for (const char* k : {"loss", "accuracy", "margin", "reward_chosen", "reward_rejected"}) {
    EXPECT_TRUE(lines.front().contains(k)) << k << " " << lines.front().dump();
  }
  EXPECT_GT(eval_accuracy, 0.9) << r.output;
  // The saved folder is a reward model with a reserved pad (never the end-of-turn token).
  std::ifstream cf(root_ + "/arith/config.json");
  const json config = json::parse(cf);
  EXPECT_EQ(config["architectures"][0], "LlamaForSequenceClassification");
  EXPECT_EQ(config["num_labels"], 1) << config.dump();
  EXPECT_EQ(config["pad_token_id"], 263);  // <|finetune_right_pad_id|> of the byte tokenizer

  // `reward score` on the eval pairs, each as prompt + completion: the chosen answers score
  // higher than the rejected ones for more than 90% of the pairs.
  std::ifstream ev(root_ + "/eval.jsonl");
  std::ofstream in(root_ + "/score_in.jsonl");
  std::string line;
  int pairs = 0;
  while (std::getline(ev, line)) {
    const auto row = json::parse(line);
    in << json{{"prompt", row["prompt"]}, {"completion", row["chosen"]}}.dump() << "\n"
       << json{{"prompt", row["prompt"]}, {"completion", row["rejected"]}}.dump() << "\n";
    ++pairs;
  }
  in.close();
  r = run("reward score --model " + root_ + "/arith --input " + root_ +
          "/score_in.jsonl --output " + root_ + "/score_out.jsonl --batch-size 5");
  ASSERT_EQ(r.code, 0) << r.output;
  std::ifstream out(root_ + "/score_out.jsonl");
  std::vector<double> rewards;
  while (std::getline(out, line)) rewards.push_back(json::parse(line)["reward"].get<double>());
  ASSERT_EQ(rewards.size(), static_cast<size_t>(2 * pairs));
  int right = 0;
  for (int i = 0; i < pairs; ++i) right += rewards[2 * i] > rewards[2 * i + 1];
  EXPECT_GT(right, 0.9 * pairs);

  // Transformers reads the saved folder and gives the same rewards (where it is installed).
  const char* py_env = std::getenv("POSTTRAIN_PYTHON");
  const std::string py = py_env ? py_env
                                : std::string(std::getenv("HOME") ? std::getenv("HOME") : "") +
                                      "/.cache/posttrain/venv-torch-2.11.0/bin/python";
  if (std::system((py + " -c 'import transformers' >/dev/null 2>&1").c_str()) != 0) {
    GTEST_SKIP() << "no Python with transformers: skipped the transformers reload check";
  }
  const std::string check = std::string(POSTTRAIN_FIXTURES) + "/../reward/hf_rewards.py";
  const std::string cmd = py + " " + check + " " + root_ + "/arith " + root_ +
                          "/score_out.jsonl 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string text;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) text.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << text;
}

TEST_F(RewardCli, ResumesExactlyAndWritesSftsLayout) {
  const std::string cfg = write_config("full", {{"max_steps", 6}});
  Ran r = run("reward train --config " + cfg + " --set output.save_every=2");
  ASSERT_EQ(r.code, 0) << r.output;
  const fs::path full = fs::path(root_) / "full";
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "metrics.jsonl",
                        "checkpoint-2/optimizer.safetensors", "checkpoint-4/trainer_state.json",
                        "checkpoint-4/tokenizer.json"}) {
    EXPECT_TRUE(fs::exists(full / f)) << f;
  }
  auto want = training_lines((full / "metrics.jsonl").string());
  const fs::path cut = fs::path(root_) / "cut";
  fs::create_directories(cut);
  fs::copy(full / "checkpoint-4", cut / "checkpoint-4", fs::copy_options::recursive);
  {
    std::ofstream m(cut / "metrics.jsonl");
    for (int i = 0; i < 4; ++i) m << want[i].dump() << "\n";
  }
  r = run("reward train --config " + cfg + " --set output.save_every=2 --out " + cut.string());
  ASSERT_EQ(r.code, 0) << r.output;
  auto got = training_lines((cut / "metrics.jsonl").string());
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    for (const char* key : {"loss", "accuracy", "eval_loss", "eval_accuracy", "num_tokens",
                            "epoch"}) {
      if (!want[i].contains(key)) continue;
      EXPECT_NEAR(got[i][key].get<double>(), want[i][key].get<double>(), 1e-6) << i << key;
    }
  }
}

TEST_F(RewardCli, TwoGlooRanksEqualOneRankWithTheDoubleBatch) {
  // As SFT's test: AdamW eps 1e-3 bounds an update's sensitivity to gradient rounding.
  const std::string eps = " --set optimizer.eps=0.001";
  const std::string one = write_config("one", {{"max_steps", 3}, {"micro_batch_size", 8}});
  Ran r = run("reward train --config " + one + eps);
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string two = write_config("two", {{"max_steps", 3}, {"micro_batch_size", 4}});
  r = run("launch --nproc 2 --quiet -- " + std::string(POSTTRAIN_BIN) + " reward train --config " +
          two + eps);
  ASSERT_EQ(r.code, 0) << r.output;
  core::SafetensorsFile a(root_ + "/one/model.safetensors"), b(root_ + "/two/model.safetensors");
  ASSERT_EQ(a.names(), b.names());
  for (const auto& name : a.names()) {
    EXPECT_LT((a.read(name) - b.read(name)).abs().max().item<double>(), 1e-6) << name;
  }
}

}  // namespace
}  // namespace posttrain::reward
