// bench_reward: reward-model optimizer steps through posttrain's Trainer (ranking collation,
// forward, score head at each response's last token, pairwise loss, backward, clipping, fused
// AdamW) on a random model of a preset shape, float32 on CPU. Each step runs one micro-batch of
// `batch` rankings: a random prompt of --prompt tokens and --responses responses of --response
// tokens, every ordered pair trained (K responses: K(K-1)/2 pairs). --layout separate puts each
// response in its own sequence (prompt + response, as transformers' RewardTrainer does);
// one_row is Llama 3's layout (the prompt once, responses as segments). Prints one JSON line:
// median seconds per step, steps/s, pairs/s, tokens/s.
//   bench_reward --preset tiny --batch 8 --prompt 96 --response 32 --responses 2
//                --layout separate --iters 5 [--threads N]
#include <algorithm>
#include <chrono>
#include <iostream>
#include <random>
#include <string>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "common/allocator.h"
#include "core/model/llama.h"
#include "core/train/trainer.h"
#include "reward/model.h"
#include "reward/rows.h"

using namespace posttrain;

int main(int argc, char** argv) {
  posttrain::retain_freed_memory();
  std::string preset = "tiny", layout = "separate";
  int64_t batch = 8, prompt = 96, response = 32, responses = 2, iters = 5, warmup = 1,
          threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--preset") preset = v;
    else if (k == "--layout") layout = v;
    else if (k == "--batch") batch = std::stoll(v);
    else if (k == "--prompt") prompt = std::stoll(v);
    else if (k == "--response") response = std::stoll(v);
    else if (k == "--responses") responses = std::stoll(v);
    else if (k == "--iters") iters = std::stoll(v);
    else if (k == "--warmup") warmup = std::stoll(v);
    else if (k == "--threads") threads = std::stoll(v);
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  core::LlamaConfig config = core::preset_config(preset);
  config.kind = core::ModelKind::kRewardModel;
  config.pad_token_id = config.vocab_size - 1;
  core::LlamaModel model(config);
  model->reset_parameters(0);

  std::mt19937_64 rng(1);
  auto random_ids = [&](int64_t n) {
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (auto& t : v) t = static_cast<int64_t>(rng() % (config.vocab_size - 1));
    return v;
  };
  auto rankings = std::make_shared<std::vector<reward::RankedTokens>>();
  for (int64_t r = 0; r < batch * (warmup + iters); ++r) {
    reward::RankedTokens t;
    t.prompt = random_ids(prompt);
    for (int64_t k = 0; k < responses; ++k) t.responses.push_back(random_ids(response));
    for (int i = 0; i < responses; ++i)
      for (int j = i + 1; j < responses; ++j) t.pairs.push_back({i, j, 0.0f});
    rankings->push_back(std::move(t));
  }
  reward::RowOptions ro;
  ro.layout = reward::parse_layout(layout);
  ro.shuffle = false;
  ro.pad_id = *config.pad_token_id;
  auto rows = std::make_shared<reward::RankingDataset>(rankings, ro);

  core::TrainerOptions o;
  o.dir = "/tmp/posttrain_bench_reward_unused";
  o.device = "cpu";
  o.lr = 1e-4;
  o.weight_decay = 0.01;
  o.micro_batch_size = batch;
  o.max_steps = warmup + iters;
  o.threads = threads;
  reward::PairwiseLossOptions lo;
  core::Trainer trainer(
      o, model,
      [lo](core::LlamaModel& m, const core::MicroBatch& b) { return reward::reward_loss(*m, b, lo); },
      rows, nullptr);
  trainer.set_rows_independent(true);  // as posttrain reward train does
  for (int64_t s = 0; s < warmup; ++s) trainer.train_step(s);
  std::vector<double> times;
  for (int64_t s = warmup; s < warmup + iters; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    trainer.train_step(s);
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  const double med = times[times.size() / 2];
  const double pairs = static_cast<double>(batch * responses * (responses - 1) / 2);
  const double tokens = static_cast<double>(
      batch * (layout == "one_row" ? prompt + responses * response
                                   : responses * (prompt + response)));
  std::cout << nlohmann::json{{"impl", "posttrain"},
                              {"layout", layout},
                              {"preset", preset},
                              {"batch", batch},
                              {"prompt", prompt},
                              {"response", response},
                              {"responses", responses},
                              {"threads", at::get_num_threads()},
                              {"median_s", med},
                              {"steps_per_s", 1.0 / med},
                              {"pairs_per_s", pairs / med},
                              {"tokens_per_s", tokens / med},
                              {"times_s", times}}
                   .dump()
            << std::endl;
  return 0;
}
