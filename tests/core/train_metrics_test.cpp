// metrics.jsonl under Hugging Face's names with the data summary and final line as event lines,
// and trainer_state.json with HF's fields (global_step, max_steps, epoch, log_history, ...) in
// every checkpoint and after the run.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/files.h"
#include "core/data/packing.h"
#include "core/train/metrics.h"
#include "core/train/trainer.h"
#include "train_test_util.h"

namespace fs = std::filesystem;

namespace posttrain::core {
namespace {

using testing::examples;
using testing::sum_loss;
using testing::tiny_model;

constexpr int kExamples = 32;

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::vector<nlohmann::json> without_events(const std::vector<nlohmann::json>& lines) {
  std::vector<nlohmann::json> out;
  for (const auto& l : lines) {
    if (!is_event_line(l)) out.push_back(l);
  }
  return out;
}

class TrainMetrics : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("posttrain_train_metrics_" + std::to_string(::getpid())))
               .string();
    posttrain::remove_tree(dir_);
  }
  void TearDown() override { posttrain::remove_tree(dir_); }

  // 32 unpacked rows (one example each), 4 rows per step (2 x 2 accumulation): one epoch is 8
  // steps, so after step k the epoch is k / 8 exactly.
  TrainerOptions options(const std::string& dir) const {
    TrainerOptions o;
    o.dir = dir;
    o.lr = 3e-3;
    o.warmup_steps = 1;
    o.device = "cpu";
    o.epochs = 1;
    o.micro_batch_size = 2;
    o.grad_accum_steps = 2;
    o.save_every = 4;
    o.eval_every = 4;
    o.threads = 1;
    return o;
  }
  std::shared_ptr<TokenRowDataset> rows(bool eval) const {
    PackingOptions p;
    p.max_seq_len = 16;
    p.packing = false;
    p.seed = 5;
    p.shuffle = !eval;
    return std::make_shared<TokenRowDataset>(examples(eval ? 4 : kExamples, eval ? 3 : 11), p);
  }
  TrainResult train(const std::string& dir, uint64_t model_seed) {
    Trainer t(options(dir), tiny_model(model_seed), sum_loss(), rows(false), rows(true));
    t.set_data_summary({{"event", "data"}, {"train_examples", kExamples}});
    return t.run();
  }

  std::string dir_;
};

TEST_F(TrainMetrics, HfNamesAndEventLines) {
  const TrainResult r = train(dir_, 3);
  ASSERT_EQ(r.final_step, 8);
  const auto lines = read_metrics(dir_ + "/metrics.jsonl");
  // data, 8 step lines, eval lines at steps 4 and 8, done.
  ASSERT_EQ(lines.size(), 12u);
  EXPECT_EQ(lines.front()["event"], "data");
  EXPECT_EQ(lines.front()["step"], 0);
  EXPECT_EQ(lines.front()["train_examples"], kExamples);
  const auto& done = lines.back();
  EXPECT_EQ(done["event"], "done");
  EXPECT_EQ(done, r.summary);

  // Real tokens of one whole epoch: every example once, whatever the order.
  int64_t epoch_tokens = 0;
  const auto all_examples = examples(kExamples, 11);
  for (const auto& ex : *all_examples) epoch_tokens += ex.ids.size();

  int64_t step = 0, last_tokens = 0;
  double loss_sum = 0;
  for (const auto& l : without_events(lines)) {
    if (l.contains("eval_loss")) {
      EXPECT_EQ(l["step"].get<int64_t>() % 4, 0) << l;
      EXPECT_DOUBLE_EQ(l["epoch"].get<double>(), l["step"].get<int64_t>() / 8.0) << l;
      continue;
    }
    ++step;
    EXPECT_EQ(l["step"], step);
    for (const char* k :
         {"loss", "learning_rate", "grad_norm", "epoch", "num_tokens", "tokens_per_s"}) {
      EXPECT_TRUE(l.contains(k)) << k << " " << l;
    }
    EXPECT_FALSE(l.contains("lr")) << l;  // HF's learning_rate only
    EXPECT_DOUBLE_EQ(l["epoch"].get<double>(), step / 8.0);
    EXPECT_GT(l["num_tokens"].get<int64_t>(), last_tokens);
    last_tokens = l["num_tokens"].get<int64_t>();
    loss_sum += l["loss"].get<double>();
  }
  EXPECT_EQ(step, 8);
  EXPECT_EQ(last_tokens, epoch_tokens);
  EXPECT_EQ(done["step"], 8);
  EXPECT_DOUBLE_EQ(done["epoch"].get<double>(), 1.0);
  EXPECT_EQ(done["num_tokens"], epoch_tokens);
  EXPECT_NEAR(done["train_loss"].get<double>(), loss_sum / 8, 1e-9);  // mean of the step losses
  EXPECT_GT(done["train_runtime"].get<double>(), 0.0);
  EXPECT_NEAR(done["train_samples_per_second"].get<double>(),
              32 / done["train_runtime"].get<double>(), 1e-6);
  EXPECT_TRUE(done.contains("eval_loss"));
}

TEST_F(TrainMetrics, TrainerStateHasHfFieldsAfterTheRun) {
  train(dir_, 3);
  const auto lines = read_metrics(dir_ + "/metrics.jsonl");
  const auto steps = without_events(lines);
  const nlohmann::json st = read_json(fs::path(dir_) / "trainer_state.json");
  EXPECT_EQ(st["global_step"], 8);
  EXPECT_EQ(st["max_steps"], 8);
  EXPECT_DOUBLE_EQ(st["epoch"].get<double>(), 1.0);
  EXPECT_EQ(st["num_train_epochs"], 1);
  EXPECT_EQ(st["num_input_tokens_seen"], lines.back()["num_tokens"]);
  EXPECT_EQ(st["logging_steps"], 1);
  EXPECT_EQ(st["eval_steps"], 4);
  EXPECT_EQ(st["save_steps"], 4);
  EXPECT_EQ(st["train_batch_size"], 2);
  // AdamW counts one step per optimizer step (it said 0 here before).
  EXPECT_EQ(st["optimizer"]["step"], 8);
  EXPECT_DOUBLE_EQ(st["scheduler"]["last_lr"].get<double>(),
                   steps[steps.size() - 2]["learning_rate"].get<double>());  // before eval 8
  EXPECT_FALSE(st["rng"]["cpu"].get<std::string>().empty());
  // log_history: the step and eval lines as written, then HF's final entry.
  const auto& history = st["log_history"];
  ASSERT_EQ(history.size(), steps.size() + 1);
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(history[i], steps[i]) << i;
  const auto& last = history.back();
  EXPECT_EQ(last["step"], 8);
  EXPECT_EQ(last["train_loss"], lines.back()["train_loss"]);
  EXPECT_EQ(last["train_runtime"], lines.back()["train_runtime"]);
  EXPECT_FALSE(last.contains("event"));

  // A checkpoint's state stops at its step.
  const nlohmann::json ck = read_json(fs::path(dir_) / "checkpoint-4" / "trainer_state.json");
  EXPECT_EQ(ck["global_step"], 4);
  EXPECT_EQ(ck["max_steps"], 8);
  EXPECT_DOUBLE_EQ(ck["epoch"].get<double>(), 0.5);
  EXPECT_EQ(ck["optimizer"]["step"], 4);
  ASSERT_EQ(ck["log_history"].size(), 5u);  // steps 1-4 and the eval at 4
  EXPECT_EQ(ck["log_history"][3]["step"], 4);
  EXPECT_EQ(ck["num_input_tokens_seen"], ck["log_history"][3]["num_tokens"]);
}

TEST_F(TrainMetrics, ResumedRunContinuesTokensAndEpochs) {
  const std::string full = dir_ + "/full", cut = dir_ + "/cut";
  train(full, 3);
  const auto want = read_metrics(full + "/metrics.jsonl");
  // Stopped after checkpoint-4: the data line and the lines through step 4 reached the disk.
  fs::create_directories(cut);
  fs::copy(fs::path(full) / "checkpoint-4", fs::path(cut) / "checkpoint-4",
           fs::copy_options::recursive);
  {
    std::ofstream m(cut + "/metrics.jsonl");
    for (const auto& l : want) {
      if (l["step"].get<int64_t>() <= 4) m << l.dump() << "\n";
    }
  }
  const TrainResult r = train(cut, 99);
  EXPECT_EQ(r.start_step, 4);
  const auto got = read_metrics(cut + "/metrics.jsonl");
  const auto a = without_events(want), b = without_events(got);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    for (const auto& [key, value] : a[i].items()) {
      if (key == "tokens_per_s") continue;
      if (value.is_number_float()) {
        EXPECT_NEAR(b[i][key].get<double>(), value.get<double>(), 1e-6) << key << " " << i;
      } else {
        EXPECT_EQ(b[i][key], value) << key << " " << i;
      }
    }
  }
  // The resumed run's own data line says where it started; its final line, what it ran.
  int data_lines = 0;
  for (const auto& l : got) {
    if (l.value("event", "") == "data") ++data_lines;
  }
  EXPECT_EQ(data_lines, 2);
  EXPECT_EQ(got[got.size() - 1]["resumed_from"], 4);
  EXPECT_NEAR(got.back()["train_samples_per_second"].get<double>(),
              16 / got.back()["train_runtime"].get<double>(), 1e-6);  // 4 steps of 4 rows
}

}  // namespace
}  // namespace posttrain::core
