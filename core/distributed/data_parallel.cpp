// DataParallel over a c10d backend: TCPStore rendezvous served by rank 0, Gloo or NCCL process
// group, bucketed collectives. Every c10d failure is rethrown as DistributedError carrying this
// rank, the operation and the first line of the backend's reason.
#include "core/distributed/data_parallel.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <arpa/inet.h>
#include <c10/util/Exception.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <sstream>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include "common/unique_fd.h"
#include "core/distributed/c10d_backends.h"

namespace posttrain::core {
namespace {

// Parses a whole decimal integer from environment variable `name`; InputError otherwise.
std::optional<int64_t> env_int(const char* name, int64_t lo, int64_t hi) {
  const char* raw = std::getenv(name);
  if (raw == nullptr || *raw == '\0') return std::nullopt;
  const std::string text(raw);
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  Location where{"environment", 0, name};
  if (errno != 0 || end == text.c_str() || *end != '\0') {
    throw InputError(where, "expected an integer, got '" + text + "'");
  }
  if (value < lo || value > hi) {
    throw InputError(where, "value " + text + " is outside [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "]");
  }
  return value;
}

// The useful first line of an exception from c10d (c10::Error carries a backtrace).
std::string reason_of(const std::exception& e) {
  std::string text;
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) {
    text = c10_error->what_without_backtrace();
  } else {
    text = e.what();
  }
  const auto newline = text.find('\n');
  if (newline != std::string::npos) text.resize(newline);
  return text;
}

double seconds(std::chrono::milliseconds ms) { return static_cast<double>(ms.count()) / 1000.0; }

}  // namespace

DistEnv DistEnv::from_environment() {
  DistEnv env;
  // torchrun's variables first; under SLURM (srun, one task per GPU) without them, its own.
  const bool torchrun = std::getenv("WORLD_SIZE") != nullptr || std::getenv("RANK") != nullptr;
  const char* world = torchrun ? "WORLD_SIZE" : "SLURM_NTASKS";
  const char* rank = torchrun ? "RANK" : "SLURM_PROCID";
  const char* local = std::getenv("LOCAL_RANK") != nullptr || torchrun ? "LOCAL_RANK" : "SLURM_LOCALID";
  if (auto v = env_int(world, 1, 1 << 20)) env.world_size = static_cast<int>(*v);
  if (auto v = env_int(rank, 0, 1 << 20)) env.rank = static_cast<int>(*v);
  if (env.rank >= env.world_size) {
    throw InputError(Location{"environment", 0, rank}, "rank " + std::to_string(env.rank) +
                                                           " is not below " + world + " " +
                                                           std::to_string(env.world_size));
  }
  env.local_rank = env.rank;
  if (auto v = env_int(local, 0, 1 << 20)) env.local_rank = static_cast<int>(*v);
  if (const char* addr = std::getenv("MASTER_ADDR"); addr != nullptr && *addr != '\0') {
    env.master_addr = addr;
  }
  if (auto v = env_int("MASTER_PORT", 1, 65535)) env.master_port = static_cast<int>(*v);
  return env;
}

std::pair<int64_t, int64_t> shard_range(int64_t n, int rank, int world_size) {
  if (world_size < 1 || rank < 0 || rank >= world_size || n < 0) {
    throw UsageError("shard_range: need 0 <= rank < world_size and n >= 0 (rank " +
                     std::to_string(rank) + ", world_size " + std::to_string(world_size) + ", n " +
                     std::to_string(n) + ")");
  }
  const int64_t base = n / world_size;
  const int64_t extra = n % world_size;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  const int64_t size = base + (rank < extra ? 1 : 0);
  return {begin, begin + size};
}

namespace {

using Fd = UniqueFd;  // common/unique_fd.h

[[noreturn]] void port_error(const char* step) {
  throw IoError(std::string("pick_free_port: ") + step + ": " + std::strerror(errno));
}

}  // namespace

int pick_free_port() {
  // A port that was merely free a moment ago can be taken by anyone before rank 0 binds it
  // (seconds later, once the ranks have started). So the port is also reserved: a connection to
  // it is made and closed from the listening side first, which leaves the port in TIME_WAIT on
  // loopback for about a minute. Meanwhile the kernel hands it to nobody for bind(0) or
  // connect(), but a listener that sets SO_REUSEADDR, as c10d's TCPStore does, can bind it.
  Fd listener(::socket(AF_INET, SOCK_STREAM, 0));
  if (listener.fd < 0) port_error("socket");
  const int on = 1;
  if (::setsockopt(listener.fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0) {
    port_error("setsockopt");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(listener.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    port_error("bind");
  }
  if (::getsockname(listener.fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    port_error("getsockname");
  }
  if (::listen(listener.fd, 1) != 0) port_error("listen");
  Fd client(::socket(AF_INET, SOCK_STREAM, 0));
  if (client.fd < 0) port_error("socket");
  if (::connect(client.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    port_error("connect");
  }
  Fd accepted(::accept(listener.fd, nullptr, nullptr));
  if (accepted.fd < 0) port_error("accept");
  accepted.close();  // the listening side closes first: its end of the pair goes to TIME_WAIT
  client.close();
  return ntohs(addr.sin_port);
}

struct DataParallel::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::string name;
};

DataParallel::DataParallel(const DistEnv& env, at::Device device, std::chrono::milliseconds timeout)
    : env_(env), device_(device), timeout_(timeout) {}

DataParallel::~DataParallel() = default;

std::shared_ptr<DataParallel> DataParallel::init(const DistEnv& env, at::Device device,
                                                 std::chrono::milliseconds timeout) {
  if (env.world_size < 1 || env.rank < 0 || env.rank >= env.world_size) {
    throw UsageError("DataParallel: rank " + std::to_string(env.rank) + " of world size " +
                     std::to_string(env.world_size) + " is not a valid place in a job");
  }
  if (!device.is_cpu() && !device.is_cuda()) {
    throw UsageError("DataParallel: device " + device.str() + " is neither CPU nor CUDA");
  }
  std::shared_ptr<DataParallel> dp(new DataParallel(env, device, timeout));
  if (env.world_size == 1) return dp;
  if (device.is_cuda() && !detail::nccl_available()) {
    detail::make_nccl_backend({}, env.rank, env.world_size, timeout);  // throws the clear error
  }
  const std::string where = "distributed rank " + std::to_string(env.rank) + "/" +
                            std::to_string(env.world_size) + " (rendezvous at " + env.master_addr +
                            ":" + std::to_string(env.master_port) + ")";
  auto impl = std::make_unique<Impl>();
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(env.master_port);
    options.isServer = env.rank == 0;
    options.numWorkers = static_cast<std::size_t>(env.world_size);
    options.waitWorkers = true;
    options.timeout = timeout;
    impl->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
  } catch (const std::exception& e) {
    throw DistributedError(where + ": could not join the rendezvous within " +
                           std::to_string(seconds(timeout)) + " s: " + reason_of(e));
  }
  try {
    if (device.is_cuda()) {
      impl->backend = detail::make_nccl_backend(impl->store, env.rank, env.world_size, timeout);
      impl->name = "nccl";
    } else {
      impl->backend = detail::make_gloo_backend(impl->store, env.rank, env.world_size,
                                                env.master_addr, timeout);
      impl->name = "gloo";
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw DistributedError(where + ": could not connect the process group: " + reason_of(e));
  }
  dp->impl_ = std::move(impl);
  return dp;
}

std::string DataParallel::backend_name() const { return impl_ ? impl_->name : "none"; }

// Waits on `work`; turns any failure into a DistributedError naming `what`.
static void wait_or_throw(const c10::intrusive_ptr<c10d::Work>& work, const DistEnv& env,
                          std::chrono::milliseconds timeout, const char* what) {
  const auto start = std::chrono::steady_clock::now();
  try {
    work->wait(timeout);
  } catch (const std::exception& e) {
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::ostringstream msg;
    msg.precision(3);
    msg << "distributed rank " << env.rank << "/" << env.world_size << ": " << what
        << " failed after " << waited << " s (a peer rank exited or stopped responding; "
        << "timeout " << seconds(timeout) << " s): " << reason_of(e);
    throw DistributedError(msg.str());
  }
}

template <typename Fn>
void DataParallel::for_each_bucket(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes,
                                   Fn fn) {
  std::vector<at::Tensor> bucket;
  int64_t bytes = 0;
  for (const at::Tensor& t : tensors) {
    const int64_t size = static_cast<int64_t>(t.nbytes());
    if (!bucket.empty() && (t.scalar_type() != bucket.front().scalar_type() ||
                            t.device() != bucket.front().device() || bytes + size > bucket_bytes)) {
      fn(bucket);
      bucket.clear();
      bytes = 0;
    }
    bucket.push_back(t);
    bytes += size;
  }
  if (!bucket.empty()) fn(bucket);
}

namespace {

// One bucket in flight: its tensors, the flat buffer the collective works on, and the work.
struct Pending {
  std::vector<at::Tensor> tensors;
  at::Tensor flat;  // [sum of numel]; aliases tensors[0] when the bucket is one contiguous tensor
  c10::intrusive_ptr<c10d::Work> work;
};

at::Tensor flatten(const std::vector<at::Tensor>& tensors) {
  if (tensors.size() == 1 && tensors[0].is_contiguous()) return tensors[0].view({-1});
  std::vector<at::Tensor> flat;
  flat.reserve(tensors.size());
  for (const at::Tensor& t : tensors) flat.push_back(t.reshape({-1}));
  return at::cat(flat);
}

void unflatten(const Pending& p) {
  if (p.tensors.size() == 1 && p.flat.data_ptr() == p.tensors[0].data_ptr()) return;
  int64_t offset = 0;
  for (const at::Tensor& t : p.tensors) {
    const int64_t n = t.numel();
    t.copy_(p.flat.narrow(0, offset, n).view(t.sizes()));
    offset += n;
  }
}

}  // namespace

void DataParallel::all_reduce_sum_(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  if (!impl_ || tensors.empty()) return;
  at::NoGradGuard no_grad;
  std::vector<Pending> pending;
  const auto start = [&](const std::vector<at::Tensor>& bucket) {
    Pending p{bucket, flatten(bucket), {}};
    std::vector<at::Tensor> args{p.flat};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    options.timeout = timeout_;
    try {
      p.work = impl_->backend->allreduce(args, options);
    } catch (const std::exception& e) {
      throw DistributedError("distributed rank " + std::to_string(env_.rank) +
                             ": all_reduce could not start: " + reason_of(e));
    }
    pending.push_back(std::move(p));
  };
  for_each_bucket(tensors, bucket_bytes, start);
  for (const Pending& p : pending) {
    wait_or_throw(p.work, env_, timeout_, "all_reduce");
    unflatten(p);
  }
}

void DataParallel::all_reduce_gradients(const std::vector<at::Tensor>& params,
                                        int64_t bucket_bytes) {
  if (!impl_) return;
  std::vector<at::Tensor> grads;
  grads.reserve(params.size());
  for (const at::Tensor& p : params) {
    if (!p.grad().defined()) {
      const_cast<at::Tensor&>(p).mutable_grad() = at::zeros_like(p);
    }
    grads.push_back(p.grad());
  }
  all_reduce_sum_(grads, bucket_bytes);
}

double DataParallel::all_reduce_sum(double value) {
  if (!impl_) return value;
  at::Tensor t = at::full({1}, value, at::TensorOptions().dtype(at::kDouble).device(device_));
  all_reduce_sum_({t});
  return t.item<double>();
}

int64_t DataParallel::all_reduce_sum(int64_t value) {
  if (!impl_) return value;
  at::Tensor t = at::full({1}, value, at::TensorOptions().dtype(at::kLong).device(device_));
  all_reduce_sum_({t});
  return t.item<int64_t>();
}

double DataParallel::all_reduce_max(double value) {
  if (!impl_) return value;
  at::Tensor t = at::full({1}, value, at::TensorOptions().dtype(at::kDouble).device(device_));
  std::vector<at::Tensor> args{t};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::MAX;
  options.timeout = timeout_;
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = impl_->backend->allreduce(args, options);
  } catch (const std::exception& e) {
    throw DistributedError("distributed rank " + std::to_string(env_.rank) +
                           ": all_reduce_max could not start: " + reason_of(e));
  }
  wait_or_throw(work, env_, timeout_, "all_reduce_max");
  return t.item<double>();
}

void DataParallel::broadcast_parameters(const std::vector<at::Tensor>& params, int root) {
  if (!impl_ || params.empty()) return;
  if (root < 0 || root >= env_.world_size) {
    throw UsageError("broadcast: root " + std::to_string(root) + " is not a rank of " +
                     std::to_string(env_.world_size));
  }
  at::NoGradGuard no_grad;
  std::vector<Pending> pending;
  const auto start = [&](const std::vector<at::Tensor>& bucket) {
    Pending p{bucket, flatten(bucket), {}};
    std::vector<at::Tensor> args{p.flat};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    options.timeout = timeout_;
    try {
      p.work = impl_->backend->broadcast(args, options);
    } catch (const std::exception& e) {
      throw DistributedError("distributed rank " + std::to_string(env_.rank) +
                             ": broadcast could not start: " + reason_of(e));
    }
    pending.push_back(std::move(p));
  };
  for_each_bucket(params, kDefaultBucketBytes, start);
  for (const Pending& p : pending) {
    wait_or_throw(p.work, env_, timeout_, "broadcast");
    unflatten(p);
  }
}

void DataParallel::send_(const std::vector<at::Tensor>& tensors, int dst, int64_t bucket_bytes) {
  if (!impl_ || tensors.empty()) return;
  if (dst < 0 || dst >= env_.world_size || dst == env_.rank) {
    throw UsageError("send: destination " + std::to_string(dst) + " is not another rank of " +
                     std::to_string(env_.world_size));
  }
  at::NoGradGuard no_grad;
  for_each_bucket(tensors, bucket_bytes, [&](const std::vector<at::Tensor>& bucket) {
    std::vector<at::Tensor> args{flatten(bucket).contiguous()};
    c10::intrusive_ptr<c10d::Work> work;
    try {
      work = impl_->backend->send(args, dst, /*tag=*/0);
    } catch (const std::exception& e) {
      throw DistributedError("distributed rank " + std::to_string(env_.rank) +
                             ": send could not start: " + reason_of(e));
    }
    wait_or_throw(work, env_, timeout_, "send");
  });
}

void DataParallel::recv_(const std::vector<at::Tensor>& tensors, int src, int64_t bucket_bytes) {
  if (!impl_ || tensors.empty()) return;
  if (src < 0 || src >= env_.world_size || src == env_.rank) {
    throw UsageError("recv: source " + std::to_string(src) + " is not another rank of " +
                     std::to_string(env_.world_size));
  }
  at::NoGradGuard no_grad;
  for_each_bucket(tensors, bucket_bytes, [&](const std::vector<at::Tensor>& bucket) {
    int64_t numel = 0;
    for (const at::Tensor& t : bucket) numel += t.numel();
    Pending p{bucket, at::empty({numel}, bucket.front().options()), {}};
    std::vector<at::Tensor> args{p.flat};
    try {
      p.work = impl_->backend->recv(args, src, /*tag=*/0);
    } catch (const std::exception& e) {
      throw DistributedError("distributed rank " + std::to_string(env_.rank) +
                             ": recv could not start: " + reason_of(e));
    }
    wait_or_throw(p.work, env_, timeout_, "recv");
    int64_t offset = 0;
    for (const at::Tensor& t : bucket) {
      t.copy_(p.flat.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  });
}

void DataParallel::barrier() {
  if (!impl_) return;
  c10d::BarrierOptions options;
  options.timeout = timeout_;
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = impl_->backend->barrier(options);
  } catch (const std::exception& e) {
    throw DistributedError("distributed rank " + std::to_string(env_.rank) +
                           ": barrier could not start: " + reason_of(e));
  }
  wait_or_throw(work, env_, timeout_, "barrier");
}

std::vector<int> assign_shard_owners(const std::vector<at::Tensor>& tensors, int world_size) {
  if (world_size < 1) throw UsageError("assign_shard_owners: world_size must be >= 1");
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return tensors[a].numel() > tensors[b].numel(); });
  std::vector<int64_t> load(world_size, 0);
  std::vector<int> owners(tensors.size(), 0);
  for (size_t i : order) {
    const int rank = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    owners[i] = rank;
    load[rank] += tensors[i].numel();
  }
  return owners;
}

ZeroShard::ZeroShard(std::vector<at::Tensor> params, std::shared_ptr<DataParallel> dp)
    : params_(std::move(params)), dp_(std::move(dp)) {
  if (!dp_) throw UsageError("ZeroShard: needs a DataParallel (init it with world_size 1 alone)");
  owners_ = assign_shard_owners(params_, dp_->world_size());
  for (size_t i = 0; i < params_.size(); ++i) {
    if (owners_[i] == dp_->rank()) owned_.push_back(params_[i]);
  }
}

void ZeroShard::sync_parameters() {
  if (!dp_->distributed()) return;
  for (int owner = 0; owner < dp_->world_size(); ++owner) {
    std::vector<at::Tensor> group;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (owners_[i] == owner) group.push_back(params_[i]);
    }
    dp_->broadcast_parameters(group, owner);
  }
}

std::vector<at::Tensor> ZeroShard::gather_to_root(const std::vector<at::Tensor>& values,
                                                  at::Device dest, int root) {
  const int rank = dp_->rank();
  if (values.size() != params_.size()) {
    throw UsageError("ZeroShard::gather_to_root: " + std::to_string(values.size()) +
                     " values for " + std::to_string(params_.size()) + " parameters");
  }
  if (root < 0 || root >= dp_->world_size()) {
    throw UsageError("ZeroShard::gather_to_root: root " + std::to_string(root) +
                     " is not a rank of " + std::to_string(dp_->world_size()));
  }
  at::NoGradGuard no_grad;
  const auto check = [&](size_t i) {
    const at::Tensor& v = values[i];
    if (!v.defined() || v.sizes() != params_[i].sizes() ||
        v.scalar_type() != params_[i].scalar_type()) {
      throw UsageError("ZeroShard::gather_to_root: rank " + std::to_string(rank) +
                       " owns parameter " + std::to_string(i) +
                       " but its value is missing or has another shape or dtype");
    }
  };
  std::vector<at::Tensor> out;
  if (rank == root) out.resize(params_.size());
  for (int owner = 0; owner < dp_->world_size(); ++owner) {
    if (rank != root && rank != owner) continue;
    std::vector<size_t> mine;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (owners_[i] == owner) mine.push_back(i);
    }
    if (owner == root) {  // the root's own values: a copy onto dest
      if (rank == root) {
        for (size_t i : mine) {
          check(i);
          out[i] = values[i].detach().to(dest, /*non_blocking=*/false, /*copy=*/true);
        }
      }
      continue;
    }
    // Chunks of at most one bucket, cut the same way on both sides (both know the shapes).
    size_t begin = 0;
    while (begin < mine.size()) {
      size_t end = begin;
      int64_t bytes = 0;
      while (end < mine.size()) {
        const at::Tensor& p = params_[mine[end]];
        const int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
        if (end > begin && bytes + size > DataParallel::kDefaultBucketBytes) break;
        bytes += size;
        ++end;
      }
      std::vector<at::Tensor> chunk;
      if (rank == owner) {
        for (size_t k = begin; k < end; ++k) {
          check(mine[k]);
          chunk.push_back(values[mine[k]].detach());
        }
        dp_->send_(chunk, root);
      } else {
        for (size_t k = begin; k < end; ++k) chunk.push_back(at::empty_like(params_[mine[k]]));
        dp_->recv_(chunk, owner);
        for (size_t k = begin; k < end; ++k) {
          out[mine[k]] = chunk[k - begin].to(dest, /*non_blocking=*/false, /*copy=*/true);
        }
      }
      begin = end;
    }
  }
  return out;
}

}  // namespace posttrain::core
