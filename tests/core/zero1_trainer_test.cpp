// ZeRO-1 in the shared trainer (training.zero_stage 1) on 2 Gloo ranks of this CPU. As in
// distributed_data_parallel_test.cpp, the parent tests re-run this binary as the ranks through
// launch_local: `Zero1Worker.Train` does nothing unless POSTTRAIN_ZERO1_WORKER_DIR is set, in
// which case it is one rank, trains the tiny model with the Trainer as job.json says, and writes
// its final parameters and which parameters its optimizer holds state for. Properties checked:
//   - zero_stage 1 reaches the parameters (and losses, and checkpointed moments) of zero_stage 0;
//   - each rank holds exp_avg / exp_avg_sq only for the parameters it owns, and the two ranks
//     together cover every parameter exactly once;
//   - a zero_stage 1 run interrupted after a checkpoint and resumed repeats the uninterrupted
//     losses step for step (resumed with zero_stage 1, and with 0: the layout is the same).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/files.h"
#include "core/checkpoint/safetensors.h"
#include "core/data/packing.h"
#include "core/distributed/data_parallel.h"
#include "core/distributed/launcher.h"
#include "core/logprobs.h"
#include "core/model/llama.h"
#include "core/train/config.h"
#include "core/train/metrics.h"
#include "core/train/trainer.h"
#include "core/train/trainer_options.h"
#include "train_test_util.h"

namespace fs = std::filesystem;

namespace posttrain::core {
namespace {

constexpr const char* kWorkerDir = "POSTTRAIN_ZERO1_WORKER_DIR";
constexpr int kSteps = 6;

// ---------------------------------------------------------------- helpers shared by both sides

using testing::tiny_config;
using testing::sum_loss;
using testing::tiny_model;

// The trainer tests' examples (next = prev + 1 mod 64), packed into rows of 16 tokens.
std::shared_ptr<TokenRowDataset> rows() {
  PackingOptions p;
  p.max_seq_len = 16;
  p.packing = true;
  p.seed = 5;
  return std::make_shared<TokenRowDataset>(testing::examples(48, 11), p);
}

// Per rank: 2 rows per micro-batch, 2 micro-batches (a global batch of 8 rows on 2 ranks).
TrainerOptions options(const std::string& dir, int64_t zero_stage) {
  TrainerOptions o;
  o.dir = dir;
  o.lr = 3e-3;
  o.warmup_steps = 1;
  o.device = "cpu";
  o.max_steps = kSteps;
  o.micro_batch_size = 2;
  o.grad_accum_steps = 2;
  o.weight_decay = 0.01;
  o.max_grad_norm = 0.5;  // below the tiny model's gradient norms (~1-1.4): clipping is on
  o.save_every = 2;
  o.threads = 1;
  o.zero_stage = zero_stage;
  return o;
}

at::Tensor flat(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> parts;
  for (const auto& t : tensors) parts.push_back(t.detach().reshape({-1}).to(at::kDouble));
  return at::cat(parts);
}

using testing::read_flat;
using testing::write_flat;

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "missing " << path;
  return nlohmann::json::parse(in);
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

// ------------------------------------------------------------------------------ the worker

TEST(Zero1Worker, Train) {
  const char* dir_env = std::getenv(kWorkerDir);
  if (dir_env == nullptr) GTEST_SKIP() << "runs only as a rank of a parent test";
  const fs::path dir(dir_env);
  const nlohmann::json job = read_json(dir / "job.json");
  const DistEnv env = DistEnv::from_environment();
  // The trainer's metrics lines go to a file rather than into the parent test's output.
  const std::string log = (dir / ("rank" + std::to_string(env.rank) + "_stdout.txt")).string();
  ASSERT_NE(std::freopen(log.c_str(), "w", stdout), nullptr);
  // Generous: no timeout is under test here, and on a loaded machine a rank may start late or
  // wait at a barrier while rank 0 writes (and fsyncs) a checkpoint.
  auto dp = DataParallel::init(env, at::kCPU, std::chrono::seconds(60));
  Trainer trainer(options(job.at("out").get<std::string>(), job.at("zero_stage").get<int64_t>()),
                  tiny_model(job.at("model_seed").get<uint64_t>()), sum_loss(), rows(), nullptr,
                  dp);
  trainer.run();
  const fs::path out = dir / ("rank" + std::to_string(env.rank));
  write_flat(out.string() + "_params.bin", flat(trainer.parameters()));
  // Which parameters this rank's optimizer holds moments for, and how large they are.
  nlohmann::json report = {{"zero_sharded", trainer.zero_sharded()},
                           {"has_state", nlohmann::json::array()},
                           {"numel", nlohmann::json::array()},
                           {"owners", assign_shard_owners(trainer.parameters(), env.world_size)}};
  auto& table = trainer.optimizer().state();
  for (const auto& p : trainer.parameters()) {
    auto it = table.find(p.unsafeGetTensorImpl());
    bool has = false;
    if (it != table.end()) {
      auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
      has = s.exp_avg().defined() && s.exp_avg_sq().defined();
    }
    report["has_state"].push_back(has);
    report["numel"].push_back(p.numel());
  }
  std::ofstream(out.string() + "_state.json") << report.dump();
}

// ------------------------------------------------------------------------------ parent side

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

fs::path fresh_dir(const std::string& name) {
  fs::path dir =
      fs::temp_directory_path() / ("posttrain_zero1_" + name + "_" + std::to_string(::getpid()));
  posttrain::remove_tree(dir.string());
  fs::create_directories(dir);
  return dir;
}

struct RankOutput {
  at::Tensor params;  // [all parameters, flattened] float64
  nlohmann::json state;
};

// Trains on 2 ranks into `out` (resuming when it holds a checkpoint); returns each rank's output.
std::vector<RankOutput> run_two_ranks(const fs::path& work, const fs::path& out, int64_t zero_stage,
                                      uint64_t model_seed) {
  fs::create_directories(work);
  std::ofstream(work / "job.json") << nlohmann::json{
      {"out", out.string()},
      {"zero_stage", zero_stage},
      {"model_seed", model_seed}}.dump();
  ::setenv(kWorkerDir, work.c_str(), 1);
  LaunchOptions launch;
  launch.nproc = 2;
  launch.omp_threads = 1;
  launch.quiet = true;
  const LaunchResult r =
      launch_local(launch, {self_exe(), "--gtest_filter=Zero1Worker.Train", "--gtest_brief=1"});
  ::unsetenv(kWorkerDir);
  EXPECT_EQ(r.exit_code, 0) << r.message;
  std::vector<RankOutput> outputs;
  for (int rank = 0; rank < 2; ++rank) {
    const std::string base = (work / ("rank" + std::to_string(rank))).string();
    outputs.push_back({read_flat(base + "_params.bin"), read_json(base + "_state.json")});
  }
  return outputs;
}

std::vector<double> losses(const fs::path& out) {
  std::vector<double> result;
  for (const auto& line : read_metrics((out / "metrics.jsonl").string())) {
    // Step lines (the final event line repeats the last loss).
    if (line.contains("loss") && !is_event_line(line)) result.push_back(line["loss"].get<double>());
  }
  return result;
}

TEST(Zero1Trainer, TwoRanksMatchReplicatedAdamW) {
  const fs::path root = fresh_dir("match");
  const auto plain = run_two_ranks(root / "w0", root / "plain", 0, 3);
  const auto zero = run_two_ranks(root / "w1", root / "zero", 1, 3);
  ASSERT_FALSE(HasFailure());
  EXPECT_FALSE(plain[0].state["zero_sharded"].get<bool>());
  EXPECT_TRUE(zero[0].state["zero_sharded"].get<bool>());
  // Replicas are identical within each run (ZeRO-1: the owners' broadcasts).
  EXPECT_TRUE(at::equal(plain[0].params, plain[1].params));
  EXPECT_TRUE(at::equal(zero[0].params, zero[1].params));
  const at::Tensor initial = flat(tiny_model(3)->parameters());
  ASSERT_EQ(initial.numel(), plain[0].params.numel());
  // (parameters() is registration order, the trainer's HF order; compare sorted values)
  const double moved = max_diff(std::get<0>(plain[0].params.sort()), std::get<0>(initial.sort()));
  ASSERT_GT(moved, 1e-3) << "training moved nothing";
  // Both stages feed the same all-reduced gradients and clip divisor to the same fused kernel;
  // only which rank runs it differs, so the result is expected bit for bit (checked to 1e-7).
  const double diff = max_diff(zero[0].params, plain[0].params);
  std::cout << "[ measure ] max |zero_stage 1 - zero_stage 0| parameter after " << kSteps
            << " steps on 2 ranks: " << diff << "\n";
  EXPECT_LE(diff, 1e-7);
  const auto lp = losses(root / "plain"), lz = losses(root / "zero");
  ASSERT_EQ(lp.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(lz.size(), lp.size());
  for (size_t i = 0; i < lp.size(); ++i) EXPECT_NEAR(lz[i], lp[i], 1e-7) << "step " << i + 1;
  // The ZeRO-1 checkpoint's optimizer.safetensors (gathered to rank 0) holds the same moments,
  // under the same names, as the replicated run's.
  for (const char* ckpt : {"checkpoint-2", "checkpoint-4"}) {
    SafetensorsFile a((root / "plain" / ckpt / "optimizer.safetensors").string());
    SafetensorsFile b((root / "zero" / ckpt / "optimizer.safetensors").string());
    ASSERT_EQ(a.names(), b.names()) << ckpt;
    EXPECT_EQ(a.names().size(), 2 * tiny_model(3)->parameters().size()) << ckpt;
    for (const auto& name : a.names()) {
      EXPECT_LE(max_diff(a.read(name).to(at::kDouble), b.read(name).to(at::kDouble)), 1e-7)
          << ckpt << " " << name;
    }
  }
  posttrain::remove_tree(root.string());
}

TEST(Zero1Trainer, EachRankKeepsStateOnlyForItsParameters) {
  const fs::path root = fresh_dir("state");
  const auto zero = run_two_ranks(root / "w", root / "out", 1, 3);
  ASSERT_FALSE(HasFailure());
  const auto owners = zero[0].state["owners"].get<std::vector<int>>();
  ASSERT_EQ(owners, zero[1].state["owners"].get<std::vector<int>>());
  const auto numel = zero[0].state["numel"].get<std::vector<int64_t>>();
  ASSERT_EQ(owners.size(), numel.size());
  ASSERT_GT(owners.size(), 10u);
  int64_t total = 0, held[2] = {0, 0};
  for (size_t i = 0; i < owners.size(); ++i) {
    const bool on0 = zero[0].state["has_state"][i].get<bool>();
    const bool on1 = zero[1].state["has_state"][i].get<bool>();
    EXPECT_NE(on0, on1) << "parameter " << i << " must have moments on exactly one rank";
    EXPECT_EQ(on0, owners[i] == 0) << "parameter " << i;
    EXPECT_EQ(on1, owners[i] == 1) << "parameter " << i;
    total += numel[i];
    held[0] += on0 ? numel[i] : 0;
    held[1] += on1 ? numel[i] : 0;
  }
  EXPECT_EQ(held[0] + held[1], total);
  // Greedy by size: neither rank keeps much more than half of the elements.
  std::cout << "[ measure ] AdamW state elements per rank under ZeRO-1: " << held[0] << " + "
            << held[1] << " of " << total << "\n";
  for (int r = 0; r < 2; ++r) EXPECT_LT(held[r], total * 6 / 10) << "rank " << r;
  posttrain::remove_tree(root.string());
}

TEST(Zero1Trainer, ResumedRunRepeatsTheUninterruptedLosses) {
  const fs::path root = fresh_dir("resume");
  const fs::path full = root / "full";
  const auto want_params = run_two_ranks(root / "wf", full, 1, 3);
  ASSERT_FALSE(HasFailure());
  const auto want = losses(full);
  ASSERT_EQ(want.size(), static_cast<size_t>(kSteps));
  const auto lines = read_metrics((full / "metrics.jsonl").string());
  // Interrupted after step 2 (checkpoint-2 and the metrics so far, plus a stale third line),
  // resumed from a differently initialised model: with zero_stage 1, and with zero_stage 0
  // (the checkpoint holds every moment, gathered, so either stage can continue it).
  for (int64_t stage : {1, 0}) {
    const fs::path cut = root / ("cut" + std::to_string(stage));
    fs::create_directories(cut);
    fs::copy(full / "checkpoint-2", cut / "checkpoint-2", fs::copy_options::recursive);
    {
      std::ofstream m(cut / "metrics.jsonl");
      for (int i = 0; i < 3; ++i) m << lines[i].dump() << "\n";
    }
    const auto got_params = run_two_ranks(root / ("wc" + std::to_string(stage)), cut, stage, 99);
    ASSERT_FALSE(HasFailure());
    const auto got = losses(cut);
    ASSERT_EQ(got.size(), want.size()) << "zero_stage " << stage;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], 1e-9) << "zero_stage " << stage << ", step " << i + 1;
    }
    const auto owners = got_params[0].state["owners"].get<std::vector<int>>();
    for (int r = 0; r < 2; ++r) {
      EXPECT_LE(max_diff(got_params[r].params, want_params[r].params), 1e-7)
          << "zero_stage " << stage << ", rank " << r;
      // A resumed ZeRO-1 rank loaded only its own shard's moments from the gathered file.
      for (size_t i = 0; i < owners.size(); ++i) {
        EXPECT_EQ(got_params[r].state["has_state"][i].get<bool>(), stage == 0 || owners[i] == r)
            << "zero_stage " << stage << ", rank " << r << ", parameter " << i;
      }
    }
  }
  posttrain::remove_tree(root.string());
}

TEST(Zero1Trainer, OneProcessKeepsAllStateAndOtherStagesAreRefused) {
  const fs::path root = fresh_dir("single");
  // Without data parallelism there is nothing to shard: zero_stage 1 is the replicated optimizer.
  Trainer t(options((root / "out").string(), 1), tiny_model(3), sum_loss(), rows(), nullptr);
  EXPECT_FALSE(t.zero_sharded());
  t.train_step(0);
  auto& table = t.optimizer().state();
  for (const auto& p : t.parameters()) EXPECT_EQ(table.count(p.unsafeGetTensorImpl()), 1u);
  EXPECT_THROW(
      Trainer(options((root / "bad").string(), 2), tiny_model(3), sum_loss(), rows(), nullptr),
      UsageError);
  // The config key: default 0, 1 accepted, anything else one error naming the key.
  ConfigSchema schema;
  add_trainer_keys(&schema);
  const nlohmann::json base = {{"output", {{"dir", (root / "cfg").string()}}}};
  EXPECT_EQ(trainer_options_from_config(schema.resolve(base, {}, "cfg.json")).zero_stage, 0);
  EXPECT_EQ(trainer_options_from_config(schema.resolve(base, {"training.zero_stage=1"}, "cfg.json"))
                .zero_stage,
            1);
  for (const char* bad :
       {"training.zero_stage=2", "training.zero_stage=-1", "training.zero_stage=true"}) {
    try {
      schema.resolve(base, {bad}, "cfg.json");
      ADD_FAILURE() << bad << " was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("training.zero_stage"), std::string::npos) << e.what();
    }
  }
  posttrain::remove_tree(root.string());
}

}  // namespace
}  // namespace posttrain::core
