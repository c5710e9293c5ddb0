// DataParallel on 2 Gloo ranks of this CPU. The multi-rank tests re-run this test binary as the
// ranks (through launch_local, so the launcher is exercised too): a `DistributedWorker.*` test
// does nothing unless POSTTRAIN_DIST_WORKER_DIR is set, in which case it is one rank and writes
// what it computed to that folder. The parent test then compares against the same computation
// done in one process: all-reduced gradients = sum of the per-rank gradients = full-batch
// gradients, and parameters after AdamW steps (plain and ZeRO-1) = one rank with batch 2b.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <torch/optim/adamw.h>
#include <ftw.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/distributed/data_parallel.h"
#include "common/files.h"
#include "core/distributed/launcher.h"
#include "core/model/llama.h"
#include "core/model/llama_config.h"
#include "train_test_util.h"

namespace posttrain::core {
namespace {

namespace fs = std::filesystem;

void remove_tree(const fs::path& dir) { posttrain::remove_tree(dir.string()); }  // see common/files.h
constexpr const char* kWorkerDir = "POSTTRAIN_DIST_WORKER_DIR";
constexpr int64_t kGlobalBatch = 4;  // rows per optimizer step over all ranks
constexpr int64_t kSeqLen = 16;
constexpr int kSteps = 3;
constexpr uint64_t kModelSeed = 1234;

// ---------------------------------------------------------------- helpers shared by both sides

// The tiny model with seeded weights. The AdamW comparison runs in float64: in float32, Adam's
// division by sqrt(v) amplifies the last-bit differences of summing a batch in two halves
// versus at once (4.8e-6 after 3 steps, measured), which would hide real bugs at 1e-6.
LlamaModel make_model(at::ScalarType dtype = at::kFloat) {
  LlamaConfig config = preset_config("tiny");
  LlamaModel model(config, at::TensorOptions().dtype(dtype));
  model->reset_parameters(kModelSeed);
  return model;
}

// Global batch of step `step`: [kGlobalBatch, kSeqLen] token ids, the same on every rank.
at::Tensor global_batch(int step) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + step);
  return at::randint(0, preset_config("tiny").vocab_size, {kGlobalBatch, kSeqLen}, gen,
                     at::TensorOptions().dtype(at::kLong));
}

// Sum of next-token cross-entropy over the rows [begin, end) of `ids`, divided by the number of
// target tokens of the whole global batch (the trainer's normalisation).
at::Tensor normalised_loss(LlamaModel& model, const at::Tensor& ids, int64_t begin, int64_t end) {
  at::Tensor rows = ids.slice(0, begin, end);  // [b, T]
  ForwardInputs in;
  in.input_ids = rows;
  at::Tensor logits = model->forward(in);  // [b, T, V]
  const int64_t vocab = logits.size(-1);
  at::Tensor sum =
      at::cross_entropy_loss(logits.slice(1, 0, kSeqLen - 1).reshape({-1, vocab}),
                             rows.slice(1, 1, kSeqLen).reshape({-1}), {}, at::Reduction::Sum);
  return sum / static_cast<double>(kGlobalBatch * (kSeqLen - 1));
}

std::vector<at::Tensor> params_of(const LlamaModel& model) { return model->parameters(); }

std::vector<at::Tensor> grads_of(LlamaModel& model) {
  std::vector<at::Tensor> out;
  for (const auto& p : model->parameters()) out.push_back(p.grad().detach().clone());
  return out;
}

// Tensors as one flat float64 vector in a binary file (see train_test_util.h).
void write_tensors(const fs::path& path, const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> flat;
  for (const auto& t : tensors) flat.push_back(t.detach().reshape({-1}).to(at::kDouble));
  testing::write_flat(path, at::cat(flat));
}

at::Tensor read_tensors(const fs::path& path) { return testing::read_flat(path); }

at::Tensor flat(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> parts;
  for (const auto& t : tensors) parts.push_back(t.detach().reshape({-1}).to(at::kDouble));
  return at::cat(parts);
}

void write_text(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs the optimisation of the AdamW tests on this process's shard. `zero`: ZeRO-1.
void train_steps(LlamaModel& model, DataParallel& dp_ref, std::shared_ptr<DataParallel> dp,
                 bool zero) {
  std::vector<at::Tensor> params = params_of(model);
  std::unique_ptr<ZeroShard> shard;
  std::vector<at::Tensor> optimised = params;
  if (zero) {
    shard = std::make_unique<ZeroShard>(params, dp);
    optimised = shard->owned_parameters();
  }
  torch::optim::AdamW opt(optimised, torch::optim::AdamWOptions(1e-3).weight_decay(0.1));
  const auto [begin, end] = shard_range(kGlobalBatch, dp_ref.rank(), dp_ref.world_size());
  for (int step = 0; step < kSteps; ++step) {
    for (auto& p : params) p.mutable_grad() = at::Tensor();
    normalised_loss(model, global_batch(step), begin, end).backward();
    dp_ref.all_reduce_gradients(params);
    opt.step();
    if (shard) shard->sync_parameters();
  }
}

fs::path fresh_dir(const std::string& name) {
  fs::path dir =
      fs::temp_directory_path() / ("posttrain_dist_" + name + "_" + std::to_string(::getpid()));
  remove_tree(dir);
  fs::create_directories(dir);
  return dir;
}

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

// Runs `DistributedWorker.<worker>` of this binary as `nproc` ranks; returns the launch result.
LaunchResult run_workers(const std::string& worker, const fs::path& dir, int nproc = 2,
                         std::chrono::milliseconds grace = std::chrono::seconds(10)) {
  ::setenv(kWorkerDir, dir.c_str(), 1);
  LaunchOptions options;
  options.nproc = nproc;
  options.grace = grace;
  options.omp_threads = 1;
  options.quiet = true;
  LaunchResult result = launch_local(
      options, {self_exe(), "--gtest_filter=DistributedWorker." + worker, "--gtest_brief=1"});
  ::unsetenv(kWorkerDir);
  return result;
}

// Inside a worker: the folder to write to, or empty when this process is not a worker.
fs::path worker_dir() {
  const char* dir = std::getenv(kWorkerDir);
  return dir == nullptr ? fs::path() : fs::path(dir);
}

// The rendezvous and collectives of the workers, where no timeout is under test: generous, so
// that ranks started slowly on a loaded machine (other builds sharing 2 cores) still meet. The
// failure workers join with it too and only then set the short timeout they test.
std::chrono::milliseconds worker_timeout() { return std::chrono::seconds(60); }

// ------------------------------------------------------------------------------ worker tests

#define SKIP_UNLESS_WORKER()                                               \
  const fs::path dir = worker_dir();                                       \
  if (dir.empty()) GTEST_SKIP() << "runs only as a rank of a parent test"; \
  const DistEnv env = DistEnv::from_environment();                         \
  const fs::path out = dir / ("rank" + std::to_string(env.rank))

TEST(DistributedWorker, Gradients) {
  SKIP_UNLESS_WORKER();
  auto dp = DataParallel::init(env, at::kCPU, worker_timeout());
  LlamaModel model = make_model();
  const auto [begin, end] = shard_range(kGlobalBatch, env.rank, env.world_size);
  normalised_loss(model, global_batch(0), begin, end).backward();
  write_tensors(out.string() + "_local.bin", grads_of(model));
  // Small buckets so the model's tensors span many of them (and some share one).
  const auto start = std::chrono::steady_clock::now();
  dp->all_reduce_gradients(params_of(model), /*bucket_bytes=*/256 << 10);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  write_tensors(out.string() + "_reduced.bin", grads_of(model));
  // Scalars: the sum of ranks + 1 and the max.
  write_text(out.string() + "_scalars.txt",
             std::to_string(dp->all_reduce_sum(static_cast<int64_t>(env.rank + 1))) + " " +
                 std::to_string(dp->all_reduce_sum(0.5 * (env.rank + 1))) + " " +
                 std::to_string(dp->all_reduce_max(static_cast<double>(env.rank))) + " " +
                 dp->backend_name() + " " + std::to_string(ms));
  dp->barrier();
}

TEST(DistributedWorker, Broadcast) {
  SKIP_UNLESS_WORKER();
  auto dp = DataParallel::init(env, at::kCPU, worker_timeout());
  LlamaModel model(preset_config("tiny"));
  model->reset_parameters(77 + env.rank);  // ranks start different
  dp->broadcast_parameters(params_of(model), /*root=*/1);
  write_tensors(out.string() + "_params.bin", params_of(model));
}

TEST(DistributedWorker, AdamW) {
  SKIP_UNLESS_WORKER();
  auto dp = DataParallel::init(env, at::kCPU, worker_timeout());
  LlamaModel plain = make_model(at::kDouble);
  train_steps(plain, *dp, dp, /*zero=*/false);
  write_tensors(out.string() + "_plain.bin", params_of(plain));
  LlamaModel zero = make_model(at::kDouble);
  train_steps(zero, *dp, dp, /*zero=*/true);
  write_tensors(out.string() + "_zero.bin", params_of(zero));
}

// Rank 1 joins, then dies; rank 0 ignores the launcher's SIGTERM so it lives to see its
// all-reduce fail, and records the error and how long it took. The collective's timeout (20 s)
// is far above what the parent accepts (5 s): only the closed sockets can fail it in time.
TEST(DistributedWorker, PeerDies) {
  SKIP_UNLESS_WORKER();
  if (env.rank == 0) ::signal(SIGTERM, SIG_IGN);
  auto dp = DataParallel::init(env, at::kCPU, worker_timeout());
  dp->barrier();
  dp->set_timeout(std::chrono::seconds(20));
  if (env.rank == 1) std::_Exit(3);
  std::vector<at::Tensor> t{at::ones({1000})};
  const auto start = std::chrono::steady_clock::now();
  try {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    dp->all_reduce_sum_(t);
    write_text(out.string() + "_error.txt", "no error");
  } catch (const DistributedError& e) {
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    write_text(out.string() + "_error.txt", std::to_string(s) + "\n" + e.what());
  }
  std::_Exit(7);
}

// Rank 1 joins and then hangs (never calls the collective): rank 0 must fail on the 3 s timeout
// its collectives get once both ranks are in.
TEST(DistributedWorker, PeerHangs) {
  SKIP_UNLESS_WORKER();
  auto dp = DataParallel::init(env, at::kCPU, worker_timeout());
  dp->barrier();
  dp->set_timeout(std::chrono::seconds(3));
  if (env.rank == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(60));
    std::_Exit(0);
  }
  const auto start = std::chrono::steady_clock::now();
  try {
    dp->all_reduce_sum(1.0);
    write_text(out.string() + "_error.txt", "no error");
  } catch (const DistributedError& e) {
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    write_text(out.string() + "_error.txt", std::to_string(s) + "\n" + e.what());
  }
  std::_Exit(7);
}

// Rank 1 never joins: rank 0's rendezvous must give up after the timeout.
TEST(DistributedWorker, PeerNeverJoins) {
  SKIP_UNLESS_WORKER();
  if (env.rank == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(60));
    std::_Exit(0);
  }
  const auto start = std::chrono::steady_clock::now();
  try {
    auto dp = DataParallel::init(env, at::kCPU, std::chrono::seconds(3));
    write_text(out.string() + "_error.txt", "no error");
  } catch (const DistributedError& e) {
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    write_text(out.string() + "_error.txt", std::to_string(s) + "\n" + e.what());
  }
  std::_Exit(7);
}

// ------------------------------------------------------------------------------ parent tests

TEST(DistEnv, ReadsTheLauncherVariables) {
  ::setenv("RANK", "1", 1);
  ::setenv("WORLD_SIZE", "4", 1);
  ::setenv("LOCAL_RANK", "0", 1);
  ::setenv("MASTER_ADDR", "10.1.2.3", 1);
  ::setenv("MASTER_PORT", "12345", 1);
  DistEnv env = DistEnv::from_environment();
  EXPECT_EQ(env.rank, 1);
  EXPECT_EQ(env.world_size, 4);
  EXPECT_EQ(env.local_rank, 0);
  EXPECT_EQ(env.master_addr, "10.1.2.3");
  EXPECT_EQ(env.master_port, 12345);
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) {
    ::unsetenv(name);
  }
  env = DistEnv::from_environment();
  EXPECT_EQ(env.rank, 0);
  EXPECT_EQ(env.world_size, 1);
  EXPECT_FALSE(env.distributed());
}

TEST(DistEnv, FallsBackToSlurmsVariablesUnderSrun) {
  ::setenv("SLURM_PROCID", "5", 1);
  ::setenv("SLURM_NTASKS", "8", 1);
  ::setenv("SLURM_LOCALID", "1", 1);
  DistEnv env = DistEnv::from_environment();
  EXPECT_EQ(env.rank, 5);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_EQ(env.local_rank, 1);
  // torchrun's variables win when both are present (torchrun started inside a SLURM job).
  ::setenv("RANK", "0", 1);
  ::setenv("WORLD_SIZE", "2", 1);
  env = DistEnv::from_environment();
  EXPECT_EQ(env.rank, 0);
  EXPECT_EQ(env.world_size, 2);
  EXPECT_EQ(env.local_rank, 0);
  for (const char* name : {"RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"}) {
    ::unsetenv(name);
  }
}

TEST(DistEnv, MalformedValuesNameTheVariable) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"RANK", "one"},      {"RANK", "-1"},           {"WORLD_SIZE", "0"},
      {"WORLD_SIZE", "2x"}, {"MASTER_PORT", "70000"}, {"LOCAL_RANK", ""}};
  for (const auto& [name, value] : cases) {
    if (value.empty()) continue;  // empty = unset, allowed
    ::setenv(name.c_str(), value.c_str(), 1);
    try {
      DistEnv::from_environment();
      ADD_FAILURE() << name << "=" << value << " was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
    ::unsetenv(name.c_str());
  }
  ::setenv("RANK", "2", 1);
  ::setenv("WORLD_SIZE", "2", 1);
  EXPECT_THROW(DistEnv::from_environment(), InputError);
  ::unsetenv("RANK");
  ::unsetenv("WORLD_SIZE");
}

TEST(ShardRange, SlicesConcatenateToTheWhole) {
  for (int world = 1; world <= 5; ++world) {
    for (int64_t n : {0, 1, 4, 7, 10}) {
      int64_t next = 0;
      for (int rank = 0; rank < world; ++rank) {
        const auto [begin, end] = shard_range(n, rank, world);
        EXPECT_EQ(begin, next);
        EXPECT_LE(end - begin, n / world + 1);
        EXPECT_GE(end - begin, n / world);
        next = end;
      }
      EXPECT_EQ(next, n);
    }
  }
  EXPECT_EQ(shard_range(7, 2, 3), (std::pair<int64_t, int64_t>{5, 7}));
  EXPECT_THROW(shard_range(4, 2, 2), UsageError);
}

// bind() of `port` on 127.0.0.1, then listen(); returns errno (0 on success).
int try_listen(int port, bool reuse_address) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const int on = 1;
  if (reuse_address) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  int err = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 1) != 0) {
    err = errno;
  }
  ::close(fd);
  return err;
}

TEST(PickFreePort, HeldBackFromOthersButOpenToTheRendezvous) {
  const int port = pick_free_port();
  ASSERT_GT(port, 0);
  // In TIME_WAIT: a plain bind (as bind(0) and connect() would need) is refused...
  EXPECT_EQ(try_listen(port, false), EADDRINUSE);
  // ...while a listener with SO_REUSEADDR, as c10d's TCPStore, gets it.
  EXPECT_EQ(try_listen(port, true), 0);
}

TEST(ZeroShard, OwnersBalanceElements) {
  std::vector<at::Tensor> t = {at::zeros({100}), at::zeros({60}), at::zeros({50}), at::zeros({10}),
                               at::zeros({10})};
  // By hand, largest first, each to the lighter rank (ties to rank 0): 100 -> 0 [100, 0],
  // 60 -> 1 [100, 60], 50 -> 1 [100, 110], first 10 -> 0 [110, 110], second 10 -> 0 (tie).
  EXPECT_EQ(assign_shard_owners(t, 2), (std::vector<int>{0, 1, 1, 0, 0}));
  EXPECT_EQ(assign_shard_owners(t, 1), (std::vector<int>(5, 0)));
}

TEST(DataParallel, OneProcessIsANoOp) {
  auto dp = DataParallel::init(DistEnv{}, at::kCPU, std::chrono::seconds(1));
  EXPECT_EQ(dp->backend_name(), "none");
  EXPECT_TRUE(dp->is_main());
  at::Tensor p = at::ones({3}).requires_grad_();
  (p * 2).sum().backward();
  dp->all_reduce_gradients({p});
  EXPECT_TRUE(at::equal(p.grad(), at::full({3}, 2.0)));
  EXPECT_EQ(dp->all_reduce_sum(int64_t{5}), 5);
  EXPECT_DOUBLE_EQ(dp->all_reduce_sum(2.5), 2.5);
  dp->barrier();
  ZeroShard shard({p}, dp);
  EXPECT_EQ(shard.owned_parameters().size(), 1u);
}

TEST(DataParallel, TwoRanksSumGradients) {
  const fs::path dir = fresh_dir("grads");
  const LaunchResult r = run_workers("Gradients", dir);
  ASSERT_EQ(r.exit_code, 0) << r.message;
  // One process: each rank's shard separately, and the whole batch.
  at::Tensor per_rank_sum;
  for (int rank = 0; rank < 2; ++rank) {
    LlamaModel model = make_model();
    const auto [begin, end] = shard_range(kGlobalBatch, rank, 2);
    normalised_loss(model, global_batch(0), begin, end).backward();
    at::Tensor g = flat(grads_of(model));
    // The worker's local gradients are this process's, bit for bit (same seed, same rows).
    EXPECT_TRUE(at::allclose(read_tensors(dir / ("rank" + std::to_string(rank) + "_local.bin")), g,
                             0, 1e-12));
    per_rank_sum = per_rank_sum.defined() ? per_rank_sum + g : g;
  }
  LlamaModel whole = make_model();
  normalised_loss(whole, global_batch(0), 0, kGlobalBatch).backward();
  const at::Tensor full = flat(grads_of(whole));
  for (int rank = 0; rank < 2; ++rank) {
    const at::Tensor reduced = read_tensors(dir / ("rank" + std::to_string(rank) + "_reduced.bin"));
    EXPECT_LT((reduced - per_rank_sum).abs().max().item<double>(), 1e-7);
    EXPECT_LT((reduced - full).abs().max().item<double>(), 1e-6);
    std::istringstream scalars(read_text(dir / ("rank" + std::to_string(rank) + "_scalars.txt")));
    int64_t isum = 0;
    double dsum = 0, dmax = 0, ms = 0;
    std::string backend;
    scalars >> isum >> dsum >> dmax >> backend >> ms;
    EXPECT_EQ(isum, 3);  // 1 + 2
    EXPECT_DOUBLE_EQ(dsum, 1.5);
    EXPECT_DOUBLE_EQ(dmax, 1.0);
    EXPECT_EQ(backend, "gloo");
    std::cout << "[ measure ] rank " << rank << ": all_reduce_gradients of the tiny model ("
              << full.numel() << " float32) over 2 Gloo ranks: " << ms << " ms\n";
  }
  remove_tree(dir);
}

TEST(DataParallel, BroadcastCopiesTheRootsParameters) {
  const fs::path dir = fresh_dir("bcast");
  const LaunchResult r = run_workers("Broadcast", dir);
  ASSERT_EQ(r.exit_code, 0) << r.message;
  LlamaModel root(preset_config("tiny"));
  root->reset_parameters(77 + 1);
  const at::Tensor expected = flat(params_of(root));
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_TRUE(
        at::equal(read_tensors(dir / ("rank" + std::to_string(rank) + "_params.bin")), expected))
        << "rank " << rank;
  }
  remove_tree(dir);
}

TEST(DataParallel, TwoRanksOfBatchBMatchOneRankOfBatch2B) {
  const fs::path dir = fresh_dir("adamw");
  const LaunchResult r = run_workers("AdamW", dir);
  ASSERT_EQ(r.exit_code, 0) << r.message;
  auto single = DataParallel::init(DistEnv{}, at::kCPU, std::chrono::seconds(1));
  LlamaModel reference = make_model(at::kDouble);
  train_steps(reference, *single, single, /*zero=*/false);
  const at::Tensor expected = flat(params_of(reference));
  const at::Tensor initial = flat(params_of(make_model(at::kDouble)));
  ASSERT_GT((expected - initial).abs().max().item<double>(), 1e-4) << "training moved nothing";
  for (int rank = 0; rank < 2; ++rank) {
    for (const char* kind : {"plain", "zero"}) {
      const at::Tensor got =
          read_tensors(dir / ("rank" + std::to_string(rank) + "_" + kind + ".bin"));
      EXPECT_LT((got - expected).abs().max().item<double>(), 1e-6) << kind << " rank " << rank;
    }
  }
  remove_tree(dir);
}

// Reads "seconds\nmessage" written by a failure worker.
std::pair<double, std::string> read_failure(const fs::path& path) {
  const std::string text = read_text(path);
  const auto newline = text.find('\n');
  if (newline == std::string::npos) return {-1, text};
  return {std::stod(text.substr(0, newline)), text.substr(newline + 1)};
}

TEST(DataParallel, DeadPeerFailsTheOthersQuickly) {
  const fs::path dir = fresh_dir("dead");
  // Grace above the worker's 20 s collective timeout: rank 0 (ignoring SIGTERM) is killed only
  // if it neither detected the dead peer nor timed out, which statuses[0] then shows.
  const LaunchResult r = run_workers("PeerDies", dir, 2, std::chrono::seconds(40));
  EXPECT_EQ(r.failed_rank, 1);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.message.find("rank 1"), std::string::npos) << r.message;
  EXPECT_EQ(r.statuses[0], 7) << "rank 0 should have exited by itself after its error";
  const auto [seconds, message] = read_failure(dir / "rank0_error.txt");
  EXPECT_GE(seconds, 0) << message;
  EXPECT_LT(seconds, 5.0) << "a dead peer must fail the collective before the timeout";
  EXPECT_NE(message.find("distributed rank 0/2"), std::string::npos) << message;
  EXPECT_NE(message.find("all_reduce failed"), std::string::npos) << message;
  std::cout << "[ measure ] dead peer detected by rank 0 after " << seconds << " s: " << message
            << "\n";
  remove_tree(dir);
}

TEST(DataParallel, HungPeerFailsTheOthersAtTheTimeout) {
  const fs::path dir = fresh_dir("hung");
  const LaunchResult r = run_workers("PeerHangs", dir, 2, std::chrono::seconds(2));
  EXPECT_EQ(r.failed_rank, 0);
  EXPECT_EQ(r.exit_code, 7);
  const auto [seconds, message] = read_failure(dir / "rank0_error.txt");
  EXPECT_GE(seconds, 2.5) << message;   // the 3 s timeout, not earlier
  EXPECT_LT(seconds, 15.0) << message;  // nor much later (a hang would be rank 1's 60 s)
  EXPECT_NE(message.find("all_reduce failed"), std::string::npos) << message;
  std::cout << "[ measure ] hung peer: rank 0 failed after " << seconds << " s\n";
  remove_tree(dir);
}

TEST(DataParallel, MissingPeerFailsTheRendezvous) {
  const fs::path dir = fresh_dir("missing");
  const LaunchResult r = run_workers("PeerNeverJoins", dir, 2, std::chrono::seconds(2));
  EXPECT_EQ(r.failed_rank, 0);
  EXPECT_EQ(r.exit_code, 7);
  const auto [seconds, message] = read_failure(dir / "rank0_error.txt");
  EXPECT_GE(seconds, 2.5) << message;
  EXPECT_LT(seconds, 15.0) << message;
  EXPECT_NE(message.find("distributed rank 0/2"), std::string::npos) << message;
  remove_tree(dir);
}

}  // namespace
}  // namespace posttrain::core
