// bench_dpo: DPO optimizer steps through posttrain's Trainer on a random model of a preset shape
// (float32 on CPU; bf16 autocast on CUDA): the reference pass first (the same random weights as
// reference, loaded and freed as `dpo train` does), then steps of `batch` pairs, each a prompt of
// `prompt` tokens with chosen and rejected of `resp` tokens in one shared-prefix row. Prints one
// JSON line: median seconds per step and the peak resident memory above the process's baseline.
//   bench_dpo --preset tiny --batch 8 --prompt 128 --resp 128 --iters 5 [--threads N]
//             [--device cuda]
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <string>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>

#include "common/allocator.h"
#include "core/model/llama.h"
#include "core/train/trainer.h"
#include "dpo/dpo_loss.h"
#include "dpo/pair_rows.h"
#include "dpo/reference.h"

using namespace posttrain;

namespace {

// Resident set size now, MiB (from /proc/self/statm).
double rss_mib() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  f >> pages >> resident;
  return static_cast<double>(resident) * sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}
// Peak resident set size of the process, MiB.
double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  posttrain::retain_freed_memory();  // as the posttrain binary does
  std::string preset = "tiny", device = "cpu";
  int64_t batch = 8, prompt = 128, resp = 128, iters = 5, warmup = 1, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--preset") preset = v;
    else if (k == "--batch") batch = std::stoll(v);
    else if (k == "--prompt") prompt = std::stoll(v);
    else if (k == "--resp") resp = std::stoll(v);
    else if (k == "--iters") iters = std::stoll(v);
    else if (k == "--warmup") warmup = std::stoll(v);
    else if (k == "--threads") threads = std::stoll(v);
    else if (k == "--device") device = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (threads > 0) at::set_num_threads(static_cast<int>(threads));
  const double baseline = rss_mib();
  const core::LlamaConfig config = core::preset_config(preset);
  const bool cuda = device != "cpu";
  const at::Device dev(device);

  // Random pairs: prompt, chosen and rejected of random tokens, every response token counted.
  std::mt19937_64 rng(1);
  auto random_ids = [&](int64_t n) {
    std::vector<int64_t> ids(n);
    for (auto& t : ids) t = static_cast<int64_t>(rng() % config.vocab_size);
    return ids;
  };
  const int64_t steps = warmup + iters;
  auto pairs = std::make_shared<std::vector<dpo::TokenizedPair>>();
  for (int64_t i = 0; i < batch * steps; ++i) {
    pairs->push_back(dpo::pretokenized_pair(random_ids(prompt), random_ids(resp), random_ids(resp),
                                            config.vocab_size, dpo::MaskOptions{}, {}));
  }
  std::vector<const dpo::TokenizedPair*> ptrs;
  for (const auto& p : *pairs) ptrs.push_back(&p);

  // The reference pass: a model of the same weights, scored, then freed.
  const auto t_ref = std::chrono::steady_clock::now();
  std::shared_ptr<const std::vector<dpo::RefValues>> refs;
  {
    core::LlamaModel ref(config);
    ref->reset_parameters(0);
    ref->to(dev);
    ref->eval();
    refs = std::make_shared<const std::vector<dpo::RefValues>>(
        dpo::score_pairs(*ref, ptrs, batch, 4096));
  }
  const double ref_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_ref).count();

  core::LlamaModel model(config);
  model->reset_parameters(0);
  if (cuda) model->to(dev);
  dpo::PairRowOptions ro;
  ro.packing = false;
  ro.shuffle = false;
  auto rows = std::make_shared<dpo::PairRowDataset>(pairs, refs, ro);
  core::TrainerOptions o;
  o.dir = "/tmp/posttrain_bench_dpo_unused";
  o.device = device;
  o.lr = 1e-6;
  o.micro_batch_size = batch;
  o.max_steps = steps;
  o.threads = threads;
  dpo::DpoLossConfig lc;
  lc.rpo_alpha = 0.2;
  core::Trainer trainer(
      o, model,
      [lc](core::LlamaModel& m, const core::MicroBatch& b) { return dpo::dpo_loss(*m, b, lc); },
      rows, nullptr);
  trainer.set_rows_independent(true);
  auto sync = [cuda] {
    if (cuda) torch::cuda::synchronize();
  };
  for (int64_t s = 0; s < warmup; ++s) trainer.train_step(s);
  sync();
  std::vector<double> times;
  for (int64_t s = warmup; s < steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    trainer.train_step(s);
    sync();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double med = median(times);
  std::cout << nlohmann::json{{"impl", "posttrain"},
                              {"preset", preset},
                              {"batch", batch},
                              {"prompt", prompt},
                              {"resp", resp},
                              {"threads", at::get_num_threads()},
                              {"device", device},
                              {"median_s", med},
                              {"steps_per_s", 1.0 / med},
                              {"reference_pass_s", ref_s},
                              {"peak_mem_mib", peak_rss_mib() - baseline},
                              {"times_s", times}}
                   .dump()
            << std::endl;
  return 0;
}
