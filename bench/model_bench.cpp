// bench_model: forward and forward+backward tokens/s of our Llama on random weights of a preset's
// shape. Forward = full logits under InferenceMode (what transformers' model(ids).logits does);
// train = mean negative log-likelihood of the next tokens through the chunked log-prob path, then
// backward. Prints one JSON line per measurement (median of --iters timed runs after a warm-up).
//   bench_model --preset tiny --batch 8 --seq 128 --mode forward --iters 5
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/logprobs.h"
#include "core/model/llama.h"

namespace {

using posttrain::core::ForwardInputs;

struct Args {
  std::string preset = "tiny", mode = "forward";
  int64_t batch = 8, seq = 128, iters = 5, warmup = 1, threads = 0;  // 0: ATen default
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--preset")
      a.preset = v;
    else if (k == "--mode")
      a.mode = v;
    else if (k == "--batch")
      a.batch = std::stoll(v);
    else if (k == "--seq")
      a.seq = std::stoll(v);
    else if (k == "--iters")
      a.iters = std::stoll(v);
    else if (k == "--warmup")
      a.warmup = std::stoll(v);
    else if (k == "--threads")
      a.threads = std::stoll(v);
    else {
      std::cerr << "unknown option " << k << "\n";
      std::exit(2);
    }
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if (a.mode != "forward" && a.mode != "train") {
    std::cerr << "--mode must be forward or train\n";
    return 2;
  }
  if (a.threads > 0) at::set_num_threads(a.threads);
  at::manual_seed(0);
  const auto config = posttrain::core::preset_config(a.preset);
  posttrain::core::LlamaModel model(config);
  const auto ids = at::randint(0, config.vocab_size, {a.batch, a.seq}, at::kLong);
  ForwardInputs in;
  in.input_ids = ids;

  auto step = [&] {
    if (a.mode == "forward") {
      c10::InferenceMode guard;
      const auto logits = model->forward(in);  // [B, T, V]
      (void)logits;
    } else {
      model->zero_grad();
      const auto lp = posttrain::core::token_logprobs(*model, in, 1024);  // [B, T-1]
      const auto loss = -lp.mean();
      loss.backward();
    }
  };
  for (int64_t i = 0; i < a.warmup; ++i) step();
  std::vector<double> times;
  for (int64_t i = 0; i < a.iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  auto sorted = times;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  nlohmann::json out = {{"impl", "posttrain"}, {"preset", a.preset},
                        {"mode", a.mode},      {"batch", a.batch},
                        {"seq", a.seq},        {"threads", at::get_num_threads()},
                        {"median_s", median},  {"tokens_per_s", a.batch * a.seq / median},
                        {"times_s", times}};
  std::cout << out.dump() << std::endl;
  return 0;
}
