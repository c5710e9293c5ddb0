// The shared trainer on a tiny random model: gradient accumulation is invisible (4 micro-batches
// of 1 == one batch of 4), a resumed run repeats the uninterrupted run's losses step for step,
// the loss falls, and the output layout is complete.
#include <gtest/gtest.h>

#include <filesystem>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/data/packing.h"
#include "common/files.h"
#include "core/logprobs.h"
#include "core/model/llama.h"
#include "core/train/metrics.h"
#include "core/train/trainer.h"
#include "core/train/trainer_state.h"
#include "train_test_util.h"

namespace fs = std::filesystem;

namespace posttrain::core {
namespace {

using testing::examples;
using testing::max_abs_diff;
using testing::tiny_config;
using testing::sum_loss;
using testing::tiny_model;

TrainerOptions base_options(const std::string& dir) {
  TrainerOptions o;
  o.dir = dir;
  o.lr = 3e-3;
  o.warmup_steps = 1;
  o.device = "cpu";
  o.max_steps = 6;
  o.weight_decay = 0.01;
  o.threads = 1;  // fast and steady on a shared 2-core machine
  return o;
}

std::shared_ptr<TokenRowDataset> rows(bool packing, int n = 32) {
  PackingOptions p;
  p.max_seq_len = 16;
  p.packing = packing;
  p.seed = 5;
  return std::make_shared<TokenRowDataset>(examples(n, 11), p);
}

std::string temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("posttrain_" + name + "_" + std::to_string(::getpid()));
  posttrain::remove_tree(d.string());
  return d.string();
}

TEST(TrainTrainer, FourMicroBatchesOfOneEqualOneBatchOfFour) {
  for (bool packing : {false, true}) {
    TrainerOptions a = base_options(temp_dir("accum_a")), b = base_options(temp_dir("accum_b"));
    a.micro_batch_size = 4;
    a.grad_accum_steps = 1;
    b.micro_batch_size = 1;
    b.grad_accum_steps = 4;
    Trainer ta(a, tiny_model(1), sum_loss(), rows(packing), nullptr);
    Trainer tb(b, tiny_model(1), sum_loss(), rows(packing), nullptr);
    int64_t na = 0, nb = 0;
    const double la = ta.accumulate_gradients(0, &na), lb = tb.accumulate_gradients(0, &nb);
    EXPECT_EQ(na, nb);
    EXPECT_GT(na, 8);
    EXPECT_NEAR(la / na, lb / nb, 1e-5);
    EXPECT_LT(max_abs_diff(ta.parameters(), tb.parameters(), true), 1e-5) << packing;
    for (const auto& p : ta.parameters()) p.mutable_grad() = at::Tensor();
    for (const auto& p : tb.parameters()) p.mutable_grad() = at::Tensor();
    // And whole optimizer steps stay together.
    for (int64_t s = 0; s < 3; ++s) {
      auto [loss_a, norm_a] = ta.train_step(s);
      auto [loss_b, norm_b] = tb.train_step(s);
      EXPECT_NEAR(loss_a, loss_b, 1e-5) << s;
      EXPECT_NEAR(norm_a, norm_b, 1e-4) << s;
    }
    EXPECT_LT(max_abs_diff(ta.parameters(), tb.parameters(), false), 1e-5);
  }
}

TEST(TrainTrainer, ResumedRunRepeatsTheLossesExactly) {
  const std::string full = temp_dir("resume_full"), cut = temp_dir("resume_cut");
  TrainerOptions o = base_options(full);
  o.micro_batch_size = 2;
  o.grad_accum_steps = 2;
  o.save_every = 2;
  Trainer t(o, tiny_model(3), sum_loss(), rows(true), nullptr);
  TrainResult r = t.run();
  EXPECT_EQ(r.final_step, 6);
  ASSERT_TRUE(fs::exists(fs::path(full) / "checkpoint-2" / "optimizer.safetensors"));
  ASSERT_TRUE(fs::exists(fs::path(full) / "checkpoint-4" / "trainer_state.json"));
  ASSERT_TRUE(fs::exists(fs::path(full) / "config.json"));
  auto want = read_metrics((fs::path(full) / "metrics.jsonl").string());
  ASSERT_EQ(want.size(), 7u);  // 6 step lines and the final "done" line
  EXPECT_EQ(want.back()["event"], "done");

  // An interrupted run: only checkpoint-2 and the first two metrics lines made it to disk.
  fs::create_directories(cut);
  fs::copy(fs::path(full) / "checkpoint-2", fs::path(cut) / "checkpoint-2",
           fs::copy_options::recursive);
  {
    std::ofstream m(fs::path(cut) / "metrics.jsonl");
    m << want[0].dump() << "\n" << want[1].dump() << "\n" << want[2].dump() << "\n";
  }
  TrainerOptions o2 = o;
  o2.dir = cut;
  // A different initialisation: everything must come from the checkpoint.
  Trainer t2(o2, tiny_model(99), sum_loss(), rows(true), nullptr);
  TrainResult r2 = t2.run();
  EXPECT_EQ(r2.start_step, 2);
  auto got = read_metrics((fs::path(cut) / "metrics.jsonl").string());
  ASSERT_EQ(got.size(), 7u);  // the stale third line was replaced
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(got[i]["step"], want[i]["step"]);
    EXPECT_NEAR(got[i]["loss"].get<double>(), want[i]["loss"].get<double>(), 1e-6) << i;
    EXPECT_DOUBLE_EQ(got[i]["learning_rate"].get<double>(),
                     want[i]["learning_rate"].get<double>())
        << i;
  }
  EXPECT_EQ(got.back()["resumed_from"], 2);
  EXPECT_LT(max_abs_diff(t.parameters(), t2.parameters(), false), 1e-6);

  // Running the finished run again does nothing.
  Trainer t3(o2, tiny_model(99), sum_loss(), rows(true), nullptr);
  EXPECT_TRUE(t3.run().already_done);
  posttrain::remove_tree(full);
  posttrain::remove_tree(cut);
}

TEST(TrainTrainer, LossFallsAndEvalIsLogged) {
  const std::string dir = temp_dir("falls");
  TrainerOptions o = base_options(dir);
  o.micro_batch_size = 4;
  o.max_steps = 30;
  o.eval_every = 10;
  o.lr = 1e-2;
  PackingOptions p;
  p.max_seq_len = 16;
  p.shuffle = false;
  auto eval = std::make_shared<TokenRowDataset>(examples(8, 77), p);
  Trainer t(o, tiny_model(4), sum_loss(), rows(true), eval);
  const double before = t.evaluate();
  TrainResult r = t.run();
  EXPECT_LT(r.last_eval_loss, before * 0.7) << before;
  auto lines = read_metrics((fs::path(dir) / "metrics.jsonl").string());
  int evals = 0;
  for (const auto& l : lines) {
    if (is_event_line(l)) continue;  // the final line
    if (l.contains("eval_loss")) {
      ++evals;
    } else {
      for (const char* k : {"step", "loss", "learning_rate", "grad_norm", "tokens_per_s"}) {
        EXPECT_TRUE(l.contains(k)) << k;
      }
    }
  }
  EXPECT_EQ(evals, 3);  // steps 10, 20 and the end
  posttrain::remove_tree(dir);
}

TEST(TrainTrainer, TooLittleDataIsAClearError) {
  TrainerOptions o = base_options(temp_dir("little"));
  o.max_steps = 0;
  o.micro_batch_size = 64;
  Trainer t(o, tiny_model(1), sum_loss(), rows(false, 8), nullptr);
  try {
    t.total_steps();
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("fewer than one global batch"), std::string::npos);
  }
}

TEST(TrainTrainer, FlopsCountTheHeadOfTheModelKind) {
  // tiny_config: hidden 32, 2 layers, 4 heads / 2 kv heads of dim 8, MLP 64, vocabulary 64.
  // Per layer: q/k/v/o 32 * 8 * (2 * 4 + 2 * 2) = 3072, MLP 3 * 32 * 64 = 6144 -> 2 * 9216 = 18432
  // matmul weights; the LM head adds 32 * 64 = 2048, a reward model's score head 32 * 1.
  // Attention at seq_len 1: 12 * 2 layers * 4 heads * 8 / 2 = 384.
  LlamaConfig c = tiny_config();
  EXPECT_DOUBLE_EQ(train_flops_per_token(c, 1), 6.0 * (18432 + 2048) + 384);
  c.kind = ModelKind::kRewardModel;
  EXPECT_DOUBLE_EQ(train_flops_per_token(c, 1), 6.0 * (18432 + 32) + 384);
}

TEST(TrainTrainer, RewardModelSchemaHasNoHeadChunkKeys) {
  ConfigSchema lm, rm;
  add_trainer_keys(&lm);
  add_trainer_keys(&rm, ModelKind::kRewardModel);
  const nlohmann::json base = {{"output", {{"dir", "/tmp/x"}}}};
  EXPECT_EQ(trainer_options_from_config(lm.resolve(base, {"training.logprob_chunk=64"}, "c.json"))
                .logprob_chunk,
            64);
  EXPECT_THROW(rm.resolve(base, {"training.logprob_chunk=64"}, "c.json"), InputError);
  EXPECT_THROW(rm.resolve(base, {"training.keep_logits_mb=1"}, "c.json"), InputError);
  // Without the keys the options keep their defaults.
  EXPECT_EQ(trainer_options_from_config(rm.resolve(base, {}, "c.json")).logprob_chunk, 4096);
}

}  // namespace
}  // namespace posttrain::core
