// The trainer's coarse CPU parallelism (core/train/cpu_parallel.h) on a tiny random model with two
// intra-op threads: a micro-batch run as one slice of rows per thread gives the loss and
// gradients of the unsplit micro-batch (up to float rounding order), the same every time; a
// resumed run repeats the uninterrupted one exactly; and the fused AdamW step split over
// threads by parameter runs is bit-identical to the unsplit one.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>

#include <filesystem>
#include <random>

#include "common/files.h"
#include "core/data/packing.h"
#include "core/logprobs.h"
#include "core/train/cpu_parallel.h"
#include "core/train/fused_adamw.h"
#include "core/train/metrics.h"
#include "core/train/trainer.h"
#include "train_test_util.h"

namespace fs = std::filesystem;

namespace posttrain::core {
namespace {

using testing::max_abs_diff;
using testing::sum_loss;
using testing::tiny_model;

// Examples of 3..12 tokens whose first two tokens are the prompt.
std::shared_ptr<TokenRowDataset> rows(bool packing) {
  std::mt19937 rng(7);
  auto ex = std::make_shared<std::vector<TokenizedExample>>();
  for (int i = 0; i < 40; ++i) {
    const int len = 3 + static_cast<int>(rng() % 10);
    std::vector<int64_t> ids;
    for (int k = 0; k < len; ++k) ids.push_back(static_cast<int64_t>(rng() % 64));
    std::vector<uint8_t> mask(len, 1);
    mask[0] = mask[1] = 0;
    ex->push_back(make_targets(ids, mask));
  }
  PackingOptions p;
  p.max_seq_len = 16;
  p.packing = packing;
  p.seed = 3;
  return std::make_shared<TokenRowDataset>(ex, p);
}

TrainerOptions options(const std::string& name) {
  TrainerOptions o;
  o.dir = (fs::temp_directory_path() / ("posttrain_" + name + "_" + std::to_string(::getpid())))
              .string();
  posttrain::remove_tree(o.dir);
  o.lr = 3e-3;
  o.warmup_steps = 1;
  o.device = "cpu";
  o.max_steps = 4;
  o.weight_decay = 0.01;
  o.micro_batch_size = 5;  // slices of 3 and 2 rows
  o.grad_accum_steps = 2;
  o.threads = 2;
  return o;
}

TEST(TrainRowSplit, BalancedRunsCoverTheItemsInOrder) {
  EXPECT_EQ(balanced_runs({1, 1, 1, 1, 1}, 2), (std::vector<int64_t>{0, 3, 5}));
  EXPECT_EQ(balanced_runs({10, 1, 1, 1}, 2), (std::vector<int64_t>{0, 1, 4}));
  EXPECT_EQ(balanced_runs({1, 1, 1, 10}, 2), (std::vector<int64_t>{0, 3, 4}));
  EXPECT_EQ(balanced_runs({4}, 2), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(balanced_runs({1, 2, 3}, 1), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(balanced_runs({2, 2, 2, 2, 2, 2}, 3), (std::vector<int64_t>{0, 2, 4, 6}));
}

TEST(TrainRowSplit, SlicedMicroBatchesMatchTheWholeOnes) {
  for (bool packing : {false, true}) {
    Trainer split(options("split"), tiny_model(1), sum_loss(), rows(packing), nullptr);
    Trainer whole(options("whole"), tiny_model(1), sum_loss(), rows(packing), nullptr);
    split.set_rows_independent(true);
    ASSERT_EQ(at::get_num_threads(), 2);
    ASSERT_EQ(coarse_threads(), 2) << "this build opens no parallel region";
    int64_t ns = 0, nw = 0;
    const double ls = split.accumulate_gradients(0, &ns), lw = whole.accumulate_gradients(0, &nw);
    EXPECT_EQ(ns, nw);
    EXPECT_NEAR(ls / ns, lw / nw, 1e-6) << packing;
    EXPECT_LT(max_abs_diff(split.parameters(), whole.parameters(), true), 1e-6) << packing;
    for (const auto& p : split.parameters()) p.mutable_grad() = at::Tensor();
    for (const auto& p : whole.parameters()) p.mutable_grad() = at::Tensor();
    for (int64_t s = 0; s < 3; ++s) {
      auto [loss_s, norm_s] = split.train_step(s);
      auto [loss_w, norm_w] = whole.train_step(s);
      EXPECT_NEAR(loss_s, loss_w, 1e-6) << s;
      EXPECT_NEAR(norm_s, norm_w, 1e-5 * norm_w) << s;
    }
    EXPECT_LT(max_abs_diff(split.parameters(), whole.parameters(), false), 1e-5) << packing;
  }
}

TEST(TrainRowSplit, SlicedStepsAreTheSameEveryRun) {
  Trainer a(options("det_a"), tiny_model(2), sum_loss(), rows(true), nullptr);
  Trainer b(options("det_b"), tiny_model(2), sum_loss(), rows(true), nullptr);
  a.set_rows_independent(true);
  b.set_rows_independent(true);
  for (int64_t s = 0; s < 3; ++s) {
    auto [loss_a, norm_a] = a.train_step(s);
    auto [loss_b, norm_b] = b.train_step(s);
    EXPECT_EQ(loss_a, loss_b) << s;
    EXPECT_EQ(norm_a, norm_b) << s;
  }
  EXPECT_EQ(max_abs_diff(a.parameters(), b.parameters(), false), 0.0);
}

TEST(TrainRowSplit, ResumedSlicedRunRepeatsTheLossesExactly) {
  TrainerOptions o = options("resume_full");
  o.save_every = 2;
  Trainer full(o, tiny_model(3), sum_loss(), rows(true), nullptr);
  full.set_rows_independent(true);
  full.run();
  const auto want = read_metrics((fs::path(o.dir) / "metrics.jsonl").string());
  ASSERT_EQ(want.size(), 5u);  // 4 steps and the final "done" line
  TrainerOptions o2 = options("resume_cut");
  o2.save_every = 2;
  fs::create_directories(o2.dir);
  fs::copy(fs::path(o.dir) / "checkpoint-2", fs::path(o2.dir) / "checkpoint-2",
           fs::copy_options::recursive);
  Trainer cut(o2, tiny_model(99), sum_loss(), rows(true), nullptr);
  cut.set_rows_independent(true);
  EXPECT_EQ(cut.run().start_step, 2);
  const auto got = read_metrics((fs::path(o2.dir) / "metrics.jsonl").string());
  ASSERT_EQ(got.size(), 3u);  // steps 3 and 4, then "done"
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(got[i]["step"], want[i + 2]["step"]);
    EXPECT_EQ(got[i]["loss"].get<double>(), want[i + 2]["loss"].get<double>()) << i;
  }
  EXPECT_EQ(max_abs_diff(full.parameters(), cut.parameters(), false), 0.0);
  posttrain::remove_tree(o.dir);
  posttrain::remove_tree(o2.dir);
}

TEST(TrainRowSplit, FusedAdamwOverThreadsIsBitIdentical) {
  // Parameters of mixed sizes in two groups, a clipping divisor, three steps on 1 and 2 threads.
  auto make = [](std::vector<at::Tensor>* ps) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
    for (int64_t n : {300, 7, 5000, 64, 1200, 3}) {
      ps->push_back(at::randn({n}, gen, at::kFloat).requires_grad_(true));
    }
    std::vector<at::Tensor> a(ps->begin(), ps->begin() + 4), b(ps->begin() + 4, ps->end());
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(a, std::make_unique<torch::optim::AdamWOptions>(
                               torch::optim::AdamWOptions(1e-2).weight_decay(0.1)));
    groups.emplace_back(b, std::make_unique<torch::optim::AdamWOptions>(
                               torch::optim::AdamWOptions(1e-2).weight_decay(0.0)));
    return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(1e-2));
  };
  std::vector<at::Tensor> p1, p2;
  auto o1 = make(&p1), o2 = make(&p2);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
  for (int step = 0; step < 3; ++step) {
    for (size_t i = 0; i < p1.size(); ++i) {
      const auto g = at::randn(p1[i].sizes(), gen, at::kFloat);
      p1[i].mutable_grad() = g.clone();
      p2[i].mutable_grad() = g.clone();
    }
    const auto divisor = at::full({}, 1.0 + step, at::kFloat);
    at::set_num_threads(1);
    fused_adamw_step(*o1, divisor);
    at::set_num_threads(2);
    ASSERT_EQ(coarse_threads(), 2);
    fused_adamw_step(*o2, divisor);
  }
  for (size_t i = 0; i < p1.size(); ++i) EXPECT_TRUE(at::equal(p1[i], p2[i])) << i;
}

}  // namespace
}  // namespace posttrain::core
