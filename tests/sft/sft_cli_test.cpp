// `posttrain sft` end to end on a tiny model: config errors are one line naming the key; a run
// writes metrics, checkpoints and the final model and counts truncated examples; re-running the
// command after an interruption repeats the losses step for step; two Gloo ranks with per-rank
// batch b reach the parameters one rank reaches with batch 2b.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint/safetensors.h"
#include "common/files.h"
#include "core/train/metrics.h"
#include "tests/cli_run.h"

namespace fs = std::filesystem;

namespace posttrain::sft {
namespace {

using Ran = testing::CliRun;
Ran run(const std::string& args) { return testing::run_cli(args); }

// The step and eval lines of a metrics file (not the data and final event lines).
std::vector<nlohmann::json> training_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  for (const auto& l : core::read_metrics(path)) {
    if (!core::is_event_line(l)) out.push_back(l);
  }
  return out;
}

class SftCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = (fs::temp_directory_path() / ("posttrain_sft_cli_" + std::to_string(::getpid())))
                .string();
    posttrain::remove_tree(root_);
    fs::create_directories(root_);
    Ran r = run("init --preset tiny --seed 3 --output " + root_ + "/model");
    ASSERT_EQ(r.code, 0) << r.output;
  }
  static void TearDownTestSuite() { posttrain::remove_tree(root_); }

  // A config on the committed example data with small, fast settings.
  std::string write_config(const std::string& name, const nlohmann::json& extra_training,
                           int64_t max_seq_len = 256) {
    nlohmann::json c = {
        {"model", {{"path", root_ + "/model"}}},
        {"data",
         {{"sources", {std::string(POSTTRAIN_FIXTURES) + "/../../sft/examples/tiny_sft.jsonl"}},
          {"max_seq_len", max_seq_len},
          {"eval_fraction", 0.1}}},
        {"optimizer", {{"lr", 0.003}}},
        {"schedule", {{"warmup_steps", 2}}},
        {"training", {{"max_steps", 6}, {"micro_batch_size", 4}, {"threads", 1}}},
        {"output", {{"dir", root_ + "/" + name}}}};
    for (auto it = extra_training.begin(); it != extra_training.end(); ++it) {
      c["training"][it.key()] = it.value();
    }
    const std::string path = root_ + "/" + name + ".json";
    std::ofstream(path) << "// test config\n" << c.dump(2);
    return path;
  }

  static std::string root_;
};
std::string SftCli::root_;

TEST_F(SftCli, ConfigErrorsAreOneLineNamingTheKey) {
  const std::string cfg = write_config("bad", {});
  Ran r = run("sft --config " + cfg + " --set optimizer.lrr=1");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("optimizer.lrr"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  r = run("sft --config " + cfg + " --set training.micro_batch_size=big");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("training.micro_batch_size"), std::string::npos) << r.output;
  r = run("sft --config " + cfg + " --set model.path=/no/such/dir");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("model.path"), std::string::npos) << r.output;
  r = run("sft --help");
  EXPECT_EQ(r.code, 0);
  for (const char* key : {"data.sources", "data.packing", "optimizer.lr", "schedule.decay",
                          "training.grad_accum_steps", "output.save_every"}) {
    EXPECT_NE(r.output.find(key), std::string::npos) << key;
  }
}

TEST_F(SftCli, RunsLogsTruncationAndResumesExactly) {
  // max_seq_len 48 cuts the longer chats of the example file.
  const std::string cfg = write_config("full", {{"max_steps", 6}}, 48);
  Ran r = run("sft --config " + cfg + " --set output.save_every=2");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto data_line = nlohmann::json::parse(r.output.substr(0, r.output.find('\n')));
  EXPECT_EQ(data_line["event"], "data");
  EXPECT_GT(data_line["sources"][0]["truncated"].get<int64_t>(), 0) << r.output;
  const fs::path full = fs::path(root_) / "full";
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "metrics.jsonl",
                        "checkpoint-2/optimizer.safetensors", "checkpoint-4/trainer_state.json",
                        "checkpoint-4/tokenizer.json"}) {
    EXPECT_TRUE(fs::exists(full / f)) << f;
  }
  const auto all = core::read_metrics((full / "metrics.jsonl").string());
  auto first = all.front();  // the data summary is in the file too, with the step it ran from
  EXPECT_EQ(first["step"], 0);
  first.erase("step");
  EXPECT_EQ(first, data_line);
  EXPECT_EQ(all.back()["event"], "done");
  const auto done =
      nlohmann::json::parse(r.output.substr(r.output.rfind('\n', r.output.size() - 2) + 1));
  EXPECT_EQ(done["event"], "done");
  EXPECT_EQ(all.back()["train_loss"], done["train_loss"]);  // the line the command printed last
  auto want = training_lines((full / "metrics.jsonl").string());
  // Six step lines and one eval line, with TRL's SFT metric.
  ASSERT_EQ(want.size(), 7u);
  EXPECT_TRUE(want.back().contains("eval_loss"));
  EXPECT_TRUE(want.back().contains("eval_mean_token_accuracy"));
  EXPECT_TRUE(want.front().contains("mean_token_accuracy"));
  EXPECT_TRUE(want.front().contains("learning_rate"));

  // Interrupted after step 4: only checkpoint-4 and the metrics so far exist. The same command
  // (pointed at that folder) resumes and logs the same losses.
  const fs::path cut = fs::path(root_) / "cut";
  fs::create_directories(cut);
  fs::copy(full / "checkpoint-4", cut / "checkpoint-4", fs::copy_options::recursive);
  {
    std::ofstream m(cut / "metrics.jsonl");
    for (int i = 0; i < 4; ++i) m << want[i].dump() << "\n";
  }
  r = run("sft --config " + cfg + " --set output.save_every=2 --out " + cut.string());
  ASSERT_EQ(r.code, 0) << r.output;
  auto got = training_lines((cut / "metrics.jsonl").string());
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const char* key = want[i].contains("loss") ? "loss" : "eval_loss";
    EXPECT_NEAR(got[i][key].get<double>(), want[i][key].get<double>(), 1e-6) << i;
  }
  // Once finished, the same command does nothing.
  r = run("sft --config " + cfg + " --set output.save_every=2 --out " + cut.string());
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("already_done"), std::string::npos) << r.output;
}

TEST_F(SftCli, TwoGlooRanksEqualOneRankWithTheDoubleBatch) {
  // Gradients agree to float rounding (the sums run in another order). AdamW with eps 1e-8
  // turns rounding noise in gradients near 1e-8 into lr-sized steps, so the comparison uses
  // eps 1e-3, which bounds an update's sensitivity to its gradient by lr / eps.
  const std::string eps = " --set optimizer.eps=0.001";
  const std::string one = write_config("one", {{"max_steps", 4}, {"micro_batch_size", 4}});
  Ran r = run("sft --config " + one + eps);
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string two = write_config("two", {{"max_steps", 4}, {"micro_batch_size", 2}});
  r = run("launch --nproc 2 --quiet -- " + std::string(POSTTRAIN_BIN) + " sft --config " + two +
          eps);
  ASSERT_EQ(r.code, 0) << r.output;
  core::SafetensorsFile a(root_ + "/one/model.safetensors"), b(root_ + "/two/model.safetensors");
  ASSERT_EQ(a.names(), b.names());
  for (const auto& name : a.names()) {
    const double diff = (a.read(name) - b.read(name)).abs().max().item<double>();
    EXPECT_LT(diff, 1e-6) << name;
  }
  auto ma = training_lines(root_ + "/one/metrics.jsonl");
  auto mb = training_lines(root_ + "/two/metrics.jsonl");
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i) {
    const char* key = ma[i].contains("loss") ? "loss" : "eval_loss";
    EXPECT_NEAR(ma[i][key].get<double>(), mb[i][key].get<double>(), 1e-6) << i;
  }
}

}  // namespace
}  // namespace posttrain::sft
