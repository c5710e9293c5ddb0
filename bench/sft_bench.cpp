// bench_sft: SFT optimizer steps through posttrain's Trainer (collation, forward, chunked
// log-prob loss, backward, clipping, AdamW) on a random model of a preset shape, float32 on CPU.
// Each step runs `accum` micro-batches of `batch` rows x `seq` random tokens, every token after
// the first a target (as bench/sft_peer.py). Prints one JSON line: median seconds per step.
//   bench_sft --preset tiny --batch 8 --seq 256 --iters 5 [--threads N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "core/data/packing.h"
#include "core/model/llama.h"
#include "core/train/trainer.h"
#include "sft/sft.h"

using namespace posttrain;

int main(int argc, char** argv) {
  std::string preset = "tiny";
  int64_t batch = 8, seq = 256, accum = 1, iters = 5, warmup = 1, threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--preset") preset = v;
    else if (k == "--batch") batch = std::stoll(v);
    else if (k == "--seq") seq = std::stoll(v);
    else if (k == "--accum") accum = std::stoll(v);
    else if (k == "--iters") iters = std::stoll(v);
    else if (k == "--warmup") warmup = std::stoll(v);
    else if (k == "--threads") threads = std::stoll(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  core::LlamaConfig config = core::preset_config(preset);
  core::LlamaModel model(config);
  model->reset_parameters(0);

  // Random rows with every token after the first a target; rows kept in order.
  std::mt19937_64 rng(1);
  auto examples = std::make_shared<std::vector<core::TokenizedExample>>();
  for (int64_t r = 0; r < batch * accum * (warmup + iters); ++r) {
    std::vector<int64_t> ids(seq);
    for (auto& t : ids) t = static_cast<int64_t>(rng() % config.vocab_size);
    std::vector<uint8_t> mask(seq, 1);
    mask[0] = 0;
    examples->push_back(core::make_targets(ids, mask));
  }
  core::PackingOptions p;
  p.max_seq_len = seq;
  p.packing = false;
  p.shuffle = false;
  auto rows = std::make_shared<core::TokenRowDataset>(examples, p);

  core::TrainerOptions o;
  o.dir = "/tmp/posttrain_bench_sft_unused";
  o.device = "cpu";
  o.lr = 1e-4;
  o.weight_decay = 0.01;
  o.micro_batch_size = batch;
  o.grad_accum_steps = accum;
  o.max_steps = warmup + iters;
  o.threads = threads;
  const int64_t chunk = o.logprob_chunk;
  core::Trainer trainer(o, model,
                        [chunk](core::LlamaModel& m, const core::MicroBatch& b) {
                          return sft::sft_loss_sum(*m, b, chunk);
                        },
                        rows, nullptr);
  for (int64_t s = 0; s < warmup; ++s) trainer.train_step(s);
  std::vector<double> times;
  for (int64_t s = warmup; s < warmup + iters; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    trainer.train_step(s);
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  const double med = sorted[sorted.size() / 2];
  const double tokens = static_cast<double>(batch * seq * accum);
  std::cout << nlohmann::json{{"impl", "posttrain"},     {"preset", preset},
                              {"batch", batch},          {"seq", seq},
                              {"accum", accum},          {"threads", at::get_num_threads()},
                              {"median_s", med},         {"steps_per_s", 1.0 / med},
                              {"tokens_per_s", tokens / med}, {"times_s", times}}
                   .dump()
            << std::endl;
  return 0;
}
