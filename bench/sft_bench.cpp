// bench_sft: SFT optimizer steps through posttrain's Trainer (collation, forward, log-prob loss,
// backward, clipping, fused AdamW) on a random model of a preset shape: float32 on CPU, bf16
// autocast with float32 master weights on CUDA. Each step runs `accum` micro-batches of `batch`
// rows x `seq` random tokens. By default every token after the first is a target (as
// bench/sft_peer.py); --prompt-frac F masks the first F of each row (as the GPU peer, 0.25).
// Prints one JSON line: median seconds per step, tokens/s, and on CUDA the peak memory, MFU and
// a split of the step (forward+loss, backward, the rest = clipping + optimizer).
//   bench_sft --preset tiny --batch 8 --seq 256 --iters 5 [--threads N] [--device cuda]
//             [--keep-logits-mb N] [--checkpointing 0|1] [--prompt-frac F] [--profile STEPS]
//             [--row-split 0|1]
// --row-split 0: no row slices on CPU (Trainer::set_rows_independent off); the default 1 runs
// the trainer as posttrain sft does.
// --profile N: after the timed steps, N more steps under the Kineto profiler; prints one
// JSON line per kernel name (GPU ms per step, launches per step), the 30 largest first.
#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/cuda.h>
#if __has_include(<cuda_runtime_api.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define BENCH_HAS_CUDA_STATS 1
#endif

#include "common/allocator.h"
#include "core/data/packing.h"
#include "core/model/autocast_scope.h"
#include "core/model/llama.h"
#include "core/train/trainer.h"
#include "kernels/logprob_rows.h"
#include "sft/sft.h"

using namespace posttrain;

namespace {

double peak_gib() {
#ifdef BENCH_HAS_CUDA_STATS
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
  return static_cast<double>(
             stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
                 .peak) /
         (1024.0 * 1024 * 1024);
#else
  return 0.0;
#endif
}

void reset_peak() {
#ifdef BENCH_HAS_CUDA_STATS
  c10::cuda::CUDACachingAllocator::resetPeakStats(0);
#endif
}

// Runs `steps` calls of `fn` under the Kineto profiler and prints the GPU kernels that took the
// most time, per step.
// On CPU it lists operators instead, largest self time (time outside nested operators) first,
// with the inclusive time (nested ones counted in each parent too) beside it.
template <typename Fn>
void profile_kernels(int64_t steps, bool cuda, Fn fn) {
  namespace prof = torch::profiler::impl;
  const prof::ProfilerConfig cfg(prof::ProfilerState::KINETO);
  const std::set<prof::ActivityType> acts{prof::ActivityType::CPU, prof::ActivityType::CUDA};
  torch::autograd::profiler::prepareProfiler(cfg, acts);
  torch::autograd::profiler::enableProfiler(cfg, acts);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) fn(i);
  if (cuda) torch::cuda::synchronize();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto result = torch::autograd::profiler::disableProfiler();
  std::map<std::string, std::pair<double, int64_t>> by_name;  // name -> (ns, launches)
  std::map<std::string, double> self_ns;  // CPU: name -> time not inside a nested operator
  double total_ns = 0;
  // CPU operators nest (a parent's time includes its children's): per thread, walk the events
  // in start order with a stack of open ones and take each child's time off its parent.
  struct Span {
    uint64_t start, end;
    std::string name;
  };
  std::map<uint64_t, std::vector<Span>> by_thread;
  for (const auto& e : result->events()) {
    if (e.deviceType() != (cuda ? c10::DeviceType::CUDA : c10::DeviceType::CPU)) continue;
    auto& slot = by_name[e.name().substr(0, 120)];
    slot.first += static_cast<double>(e.durationNs());
    slot.second += 1;
    total_ns += static_cast<double>(e.durationNs());
    if (!cuda) {
      by_thread[e.startThreadId()].push_back({e.startNs(), e.endNs(), e.name().substr(0, 120)});
    }
  }
  double self_total_ns = 0;
  for (auto& [tid, spans] : by_thread) {
    std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
      return a.start != b.start ? a.start < b.start : a.end > b.end;
    });
    std::vector<const Span*> open;
    for (const auto& s : spans) {
      while (!open.empty() && open.back()->end <= s.start) open.pop_back();
      const double d = static_cast<double>(s.end - s.start);
      self_ns[s.name] += d;
      self_total_ns += d;
      if (!open.empty()) {
        self_ns[open.back()->name] -= d;
        self_total_ns -= d;
      }
      open.push_back(&s);
    }
  }
  std::vector<std::pair<double, std::string>> order;
  for (const auto& [name, v] : by_name) order.emplace_back(cuda ? v.first : self_ns[name], name);
  std::sort(order.rbegin(), order.rend());
  std::cout << nlohmann::json{{"profile_steps", steps},
                              {"wall_ms_per_step", wall * 1e3 / steps},
                              {"kernel_ms_per_step", total_ns / 1e6 / steps},
                              {"kernel_names", by_name.size()},
                              {"self_ms_per_step", self_total_ns / 1e6 / steps}}
                   .dump()
            << std::endl;
  for (size_t i = 0; i < order.size() && i < 30; ++i) {
    const auto& v = by_name[order[i].second];
    std::cout << nlohmann::json{{"kernel", order[i].second},
                                {"ms_per_step", v.first / 1e6 / steps},
                                {"self_ms_per_step", cuda ? v.first / 1e6 / steps
                                                          : self_ns[order[i].second] / 1e6 / steps},
                                {"launches_per_step", static_cast<double>(v.second) / steps}}
                     .dump()
              << std::endl;
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  posttrain::retain_freed_memory();  // as the posttrain binary does
  std::string preset = "tiny";
  std::string device = "cpu";
  int64_t batch = 8, seq = 256, accum = 1, iters = 5, warmup = 1, threads = 0;
  int64_t keep_logits_mb = core::kDefaultKeepLogitsBytes >> 20, checkpointing = 0;
  double prompt_frac = 0.0;
  int64_t profile = 0, row_split = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--preset") preset = v;
    else if (k == "--batch") batch = std::stoll(v);
    else if (k == "--seq") seq = std::stoll(v);
    else if (k == "--accum") accum = std::stoll(v);
    else if (k == "--iters") iters = std::stoll(v);
    else if (k == "--warmup") warmup = std::stoll(v);
    else if (k == "--threads") threads = std::stoll(v);
    else if (k == "--device") device = v;
    else if (k == "--keep-logits-mb") keep_logits_mb = std::stoll(v);
    else if (k == "--checkpointing") checkpointing = std::stoll(v);
    else if (k == "--prompt-frac") prompt_frac = std::stod(v);
    else if (k == "--profile") profile = std::stoll(v);
    else if (k == "--row-split") row_split = std::stoll(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  core::LlamaConfig config = core::preset_config(preset);
  core::LlamaModel model(config);
  model->reset_parameters(0);
  const bool cuda = device != "cpu";
  if (cuda) model->to(at::Device(device));

  // Random rows with every token after the first a target; rows kept in order.
  std::mt19937_64 rng(1);
  auto examples = std::make_shared<std::vector<core::TokenizedExample>>();
  for (int64_t r = 0; r < batch * accum * (warmup + iters + profile); ++r) {
    std::vector<int64_t> ids(seq);
    for (auto& t : ids) t = static_cast<int64_t>(rng() % config.vocab_size);
    std::vector<uint8_t> mask(seq, 1);
    const int64_t prompt = std::max<int64_t>(1, static_cast<int64_t>(prompt_frac * seq));
    for (int64_t t = 0; t < prompt; ++t) mask[t] = 0;
    examples->push_back(core::make_targets(ids, mask));
  }
  core::PackingOptions p;
  p.max_seq_len = seq;
  p.packing = false;
  p.shuffle = false;
  auto rows = std::make_shared<core::TokenRowDataset>(examples, p);

  core::TrainerOptions o;
  o.dir = "/tmp/posttrain_bench_sft_unused";
  o.device = device;
  o.activation_checkpointing = checkpointing != 0;
  o.lr = 1e-4;
  o.weight_decay = 0.01;
  o.micro_batch_size = batch;
  o.grad_accum_steps = accum;
  o.max_steps = warmup + iters + profile;
  o.threads = threads;
  const int64_t chunk = o.logprob_chunk, keep = keep_logits_mb << 20;
  auto loss = [chunk, keep](core::LlamaModel& m, const core::MicroBatch& b) {
    return sft::sft_loss_sum(*m, b, chunk, keep);
  };
  core::Trainer trainer(o, model, loss, rows, nullptr);
  trainer.set_rows_independent(row_split != 0);  // as posttrain sft does
  auto sync = [cuda] {
    if (cuda) torch::cuda::synchronize();
  };
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  for (int64_t s = 0; s < warmup; ++s) trainer.train_step(s);
  sync();
  if (cuda) reset_peak();
  std::vector<double> times;
  for (int64_t s = warmup; s < warmup + iters; ++s) {
    const auto t0 = now();
    trainer.train_step(s);
    sync();
    times.push_back(secs(t0, now()));
  }
  const double med = median(times);
  const double peak = cuda ? peak_gib() : 0.0;
  const double tokens = static_cast<double>(batch * seq * accum);
  nlohmann::json line{{"impl", "posttrain"},     {"preset", preset},
                      {"batch", batch},          {"seq", seq},
                      {"accum", accum},          {"threads", at::get_num_threads()},
                      {"device", device},        {"median_s", med},
                      {"steps_per_s", 1.0 / med}, {"tokens_per_s", tokens / med},
                      {"times_s", times}};
  if (cuda) {
    // Where a step's time goes: forward+loss, and forward+loss+backward, of one micro-batch
    // timed alone (same rows, autocast as the trainer does); the rest is clipping + AdamW.
    const auto mb_cpu = rows->collate([&] {
      std::vector<core::RowRef> r;
      for (int64_t i = 0; i < batch; ++i) r.push_back({0, i});
      return r;
    }());
    core::MicroBatch mb = mb_cpu;
    for (auto& [name, t] : mb.tensors) t = t.to(at::Device(device));
    std::vector<double> fwd, fwdbwd;
    for (int64_t i = 0; i < iters; ++i) {
      for (int pass = 0; pass < 2; ++pass) {
        sync();
        const auto t0 = now();
        at::Tensor l;
        {
          core::AutocastScope autocast(at::kCUDA, /*on=*/true);
          l = loss(model, mb);
        }
        if (pass == 1) (l / static_cast<double>(mb.num_terms)).backward();
        sync();
        (pass == 0 ? fwd : fwdbwd).push_back(secs(t0, now()));
        for (auto& p : model->parameters()) p.mutable_grad() = at::Tensor();
      }
    }
    const double fpt = core::train_flops_per_token(config, seq);
    int64_t n_params = 0;
    for (const auto& p : model->parameters()) n_params += p.numel();
    const double peer_fpt = 6.0 * n_params + 12.0 * config.num_hidden_layers *
                                                  config.hidden_size * static_cast<double>(seq);
    line["peak_mem_gib"] = peak;
    line["params"] = n_params;
    line["mfu"] = tokens / med * fpt / 989e12;
    line["mfu_peer_formula"] = tokens / med * peer_fpt / 989e12;
    line["micro_fwd_s"] = median(fwd);
    line["micro_fwd_bwd_s"] = median(fwdbwd);
    line["keep_logits_mb"] = keep_logits_mb;
    line["checkpointing"] = checkpointing;
    line["cuda_kernels"] = kernels::cuda_kernels_enabled();
  }
  std::cout << line.dump() << std::endl;
  if (profile > 0) {
    profile_kernels(profile, cuda, [&](int64_t i) { trainer.train_step(warmup + iters + i); });
  }
  return 0;
}
