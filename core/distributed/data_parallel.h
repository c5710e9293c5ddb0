// Data parallelism over LibTorch's c10d: one process per rank, each with a full replica of the
// model, gradients summed across ranks after backward. Gloo carries CPU tensors, NCCL CUDA ones.
//
// Ranks come from the environment every launcher sets (RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR, MASTER_PORT), so `torchrun`, SLURM wrappers and `posttrain launch --nproc N`
// all start it. Rank 0 serves the rendezvous (a c10d TCPStore on MASTER_ADDR:MASTER_PORT).
//
// With world_size 1 nothing distributed is created and every collective is a no-op that returns
// its input, so a trainer calls the same functions on one process and on many.
//
// Failure contract: every collective waits at most the timeout given to init() (or the last
// set_timeout()). A peer that died (its sockets close) fails the collective at once; a peer that
// hangs fails it when the timeout passes. Either way the call throws
// posttrain::core::DistributedError naming this rank, the operation and the backend's reason;
// the process should then exit non-zero (the CLI does).
//
// Loss normalisation across ranks is the caller's: gradients are SUMMED, not averaged. A trainer
// that wants "sum of token losses / target tokens of the whole step" computes the global token
// count with all_reduce_sum(), divides its local loss sum by it, runs backward, then calls
// all_reduce_gradients(). The result equals one process seeing every rank's examples.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace posttrain::core {

// A collective or the rendezvous failed (peer died, timed out, or disagreed on shapes).
class DistributedError : public Error {
 public:
  using Error::Error;
};

// Where this process sits in the job. Defaults are a single process.
struct DistEnv {
  int rank = 0;        // 0 <= rank < world_size
  int world_size = 1;  // number of processes in the job
  int local_rank = 0;  // rank among the processes of this machine (picks the CUDA device)
  std::string master_addr = "127.0.0.1";  // host of rank 0's rendezvous store
  int master_port = 29500;                // its TCP port

  // Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. Unset variables keep the
  // defaults above (LOCAL_RANK defaults to RANK). A malformed or out-of-range value throws
  // InputError naming the variable and its value.
  static DistEnv from_environment();
  bool distributed() const { return world_size > 1; }
};

// The contiguous slice [begin, end) of `n` items that `rank` of `world_size` owns: the first
// n % world_size ranks get one extra item. Concatenating the slices of ranks 0..W-1 in order
// gives 0..n-1, so rank r of W with batch b sees exactly what one process with batch W*b sees.
std::pair<int64_t, int64_t> shard_range(int64_t n, int rank, int world_size);

// A TCP port on 127.0.0.1 that is free and held back for about a minute (in TIME_WAIT) from
// other programs asking the kernel for any free port, while a server setting SO_REUSEADDR (c10d's
// TCPStore) can still bind it: the launcher's MASTER_PORT.
int pick_free_port();

class DataParallel {
 public:
  // Joins the job described by `env`. world_size 1: returns at once, creates nothing.
  // Otherwise connects to the rendezvous (rank 0 serves it), then builds the process group:
  // Gloo when device is CPU, NCCL when CUDA (throws UsageError when this build has no NCCL).
  // `timeout` bounds the rendezvous and every later collective. Throws DistributedError when a
  // peer does not show up in time.
  static std::shared_ptr<DataParallel> init(
      const DistEnv& env, at::Device device,
      std::chrono::milliseconds timeout = std::chrono::minutes(10));
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  int local_rank() const { return env_.local_rank; }
  bool is_main() const { return env_.rank == 0; }
  bool distributed() const { return env_.world_size > 1; }
  at::Device device() const { return device_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  // Bounds every later collective by `timeout` instead of init()'s (the rendezvous is over): a
  // job can join with a generous timeout, for ranks that start slowly on a loaded machine, and
  // still give up on a hung peer quickly once it runs.
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  // "gloo", "nccl", or "none" for a single process.
  std::string backend_name() const;

  // Replaces each parameter's .grad() by its SUM over ranks. Gradients are flattened into
  // buckets of at most `bucket_bytes` (one dtype and device per bucket), each bucket is
  // all-reduced as one tensor, then copied back. A parameter without a gradient gets a zero
  // one first, so every rank reduces the same layout. Every rank must pass the same
  // parameters in the same order with the same shapes.
  void all_reduce_gradients(const std::vector<at::Tensor>& params,
                            int64_t bucket_bytes = kDefaultBucketBytes);
  // In-place SUM of tensors over ranks, bucketed as above (same contract on shapes/order).
  void all_reduce_sum_(const std::vector<at::Tensor>& tensors,
                       int64_t bucket_bytes = kDefaultBucketBytes);
  // Scalar sums over ranks (computed in float64 / int64 on the CPU side).
  double all_reduce_sum(double value);
  int64_t all_reduce_sum(int64_t value);
  // Scalar maximum over ranks (e.g. "did any rank see a non-finite loss").
  double all_reduce_max(double value);

  // Copies `root`'s values of each tensor into every rank's tensor, in place (bucketed).
  void broadcast_parameters(const std::vector<at::Tensor>& params, int root = 0);
  // Same for any tensors; an alias that reads better outside of parameters.
  void broadcast_(const std::vector<at::Tensor>& tensors, int root = 0) {
    broadcast_parameters(tensors, root);
  }
  // Point to point: sends `tensors` to rank `dst`, which must call recv_() with tensors of the
  // same shapes, dtypes and order; recv_() overwrites its tensors in place with what rank `src`
  // sent. Bucketed as above; each bucket completes (or throws DistributedError) before the next
  // one starts, so the two sides need no matching tags.
  void send_(const std::vector<at::Tensor>& tensors, int dst,
             int64_t bucket_bytes = kDefaultBucketBytes);
  void recv_(const std::vector<at::Tensor>& tensors, int src,
             int64_t bucket_bytes = kDefaultBucketBytes);
  // Every rank waits until all ranks arrive.
  void barrier();

  static constexpr int64_t kDefaultBucketBytes = 25LL << 20;  // 25 MiB, as PyTorch DDP

 private:
  struct Impl;
  DataParallel(const DistEnv& env, at::Device device, std::chrono::milliseconds timeout);
  // Runs fn over buckets of same-dtype tensors whose sizes add up to at most bucket_bytes.
  template <typename Fn>
  void for_each_bucket(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes, Fn fn);

  DistEnv env_;
  at::Device device_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Impl> impl_;  // null when world_size == 1
};

// ZeRO stage 1: optimizer state sharded across ranks. Each parameter is owned by one rank
// (greedy by size, so ranks hold about equal numbers of elements); a rank builds its optimizer
// over owned_parameters() only, so its moments cover only its shard. Gradients are still
// all-reduced in full (so a global gradient norm is the same everywhere); after each step the
// owners broadcast their updated parameters so every replica is identical again.
//
//   ZeroShard shard(params, dp);        // same params, same order on every rank
//   AdamW opt(shard.owned_parameters(), ...);
//   ... backward; dp.all_reduce_gradients(params); clip; opt.step(); shard.sync_parameters();
class ZeroShard {
 public:
  ZeroShard(std::vector<at::Tensor> params, std::shared_ptr<DataParallel> dp);
  // The parameters whose optimizer state this rank keeps (all of them on one process).
  const std::vector<at::Tensor>& owned_parameters() const { return owned_; }
  // owner()[i] is the rank that updates params[i].
  const std::vector<int>& owners() const { return owners_; }
  // Broadcasts every parameter from its owner (bucketed per owner). No-op on one process.
  void sync_parameters();
  // Collects one tensor per parameter, held by that parameter's owner, onto rank `root` (for
  // checkpoints of sharded optimizer state). values[i] must be defined, contiguous-able and of
  // params[i]'s shape and dtype on the rank that owns parameter i; it is ignored on the others.
  // On `root` returns every parameter's tensor on `dest` (foreign ones arrive one bucket at a
  // time, so the training device holds at most one bucket of them at once); elsewhere returns
  // an empty vector. A collective: every rank must call it with the same `root`.
  std::vector<at::Tensor> gather_to_root(const std::vector<at::Tensor>& values, at::Device dest,
                                         int root = 0);

 private:
  std::vector<at::Tensor> params_;
  std::shared_ptr<DataParallel> dp_;
  std::vector<int> owners_;
  std::vector<at::Tensor> owned_;
};

// The owner of each tensor under ZeroShard's rule: tensors sorted by numel (descending, ties by
// index) each go to the rank with the fewest elements so far (ties to the lowest rank).
std::vector<int> assign_shard_owners(const std::vector<at::Tensor>& tensors, int world_size);

}  // namespace posttrain::core
