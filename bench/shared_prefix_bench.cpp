// bench_shared_prefix: one shared-prefix row per prompt (core/data/shared_prefix.h: the prompt
// once, then K responses that each see it) against K separate rows (prompt + response each), on
// the same model, tokens and targets. Times scoring (forward, per-token log-probs, no graph) and
// a training step's forward+backward (sum of the response log-probs), median of --iters runs of
// each, timed alternately after a warm-up. Prints one JSON line per layout and mode with groups/s
// and ranked pairs/s (K(K-1)/2 pairs per group: 3 for edited > chosen > rejected), then the
// ratio.
//   bench_shared_prefix --preset tiny --groups 4 --prompt 256 --response 64 --responses 3
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "core/data/shared_prefix.h"
#include "core/logprobs.h"
#include "core/model/llama.h"
#include "core/model/llama_config.h"

namespace {

using namespace posttrain::core;

struct Args {
  std::string preset = "tiny";
  int64_t groups = 4, prompt = 256, response = 64, responses = 3, iters = 5, threads = 2,
          layers = 0;  // 0 = the preset's
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--preset") {
      a.preset = v;
      continue;
    }
    const int64_t n = std::stoll(v);
    if (k == "--groups") a.groups = n;
    else if (k == "--prompt") a.prompt = n;
    else if (k == "--response") a.response = n;
    else if (k == "--responses") a.responses = n;
    else if (k == "--iters") a.iters = n;
    else if (k == "--threads") a.threads = n;
    else if (k == "--layers") a.layers = n;
    else {
      std::cerr << "unknown option " << k << "\n";
      std::exit(2);
    }
  }
  return a;
}

std::pair<double, double> median_seconds(int64_t iters, const std::function<void()>& a,
                                         const std::function<void()>& b) {
  a(), b();  // warm-up
  std::vector<double> ta, tb;
  auto time = [](const std::function<void()>& fn) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  for (int64_t i = 0; i < iters; ++i) ta.push_back(time(a)), tb.push_back(time(b));
  std::sort(ta.begin(), ta.end());
  std::sort(tb.begin(), tb.end());
  return {ta[ta.size() / 2], tb[tb.size() / 2]};
}

struct Batch {
  ForwardInputs in;
  at::Tensor targets;  // [B, T]
};

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  at::set_num_threads(static_cast<int>(a.threads));
  auto config = preset_config(a.preset);
  if (a.layers > 0) config.num_hidden_layers = a.layers;
  LlamaModel model(config);
  model->reset_parameters(0);
  at::manual_seed(1);
  auto draw = [&](int64_t n) {
    const auto t = at::randint(0, config.vocab_size, {n}, at::kLong);
    return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n);
  };
  // Shared: one row per group. Separate: K rows per group, each prompt + response (all of one
  // length: no padding), targets the response tokens.
  std::vector<SharedPrefixDocument> docs;
  std::vector<std::vector<int64_t>> rows;
  const int64_t L = a.prompt + a.response;
  auto sep_ids = at::empty({a.groups * a.responses, L}, at::kLong);    // [G K, L]
  auto sep_targets = at::full({a.groups * a.responses, L}, -100, at::kLong);  // [G K, L]
  for (int64_t g = 0; g < a.groups; ++g) {
    const auto prompt = draw(a.prompt);
    std::vector<std::vector<int64_t>> resp;
    for (int64_t k = 0; k < a.responses; ++k) {
      resp.push_back(draw(a.response));
      std::vector<int64_t> ids = prompt;
      ids.insert(ids.end(), resp.back().begin(), resp.back().end());
      sep_ids[g * a.responses + k].copy_(at::tensor(ids));
      sep_targets[g * a.responses + k].narrow(0, a.prompt - 1, a.response)
          .copy_(at::tensor(resp.back()));
    }
    docs.push_back(shared_prefix_document(prompt, resp));
    rows.push_back({g});
  }
  const auto packed = collate_shared_prefix(docs, rows, 0);
  const Batch shared{packed.forward_inputs(), packed.targets};
  Batch separate;
  separate.in.input_ids = sep_ids;
  separate.targets = sep_targets;

  auto score = [&](const Batch& b) {
    c10::InferenceMode inference;
    target_logprobs(*model, model->hidden_states(b.in), b.targets);
  };
  auto train = [&](const Batch& b) {
    model->zero_grad();
    target_logprobs(*model, model->hidden_states(b.in), b.targets).sum().backward();
  };
  const double pairs = static_cast<double>(a.groups * a.responses * (a.responses - 1) / 2);
  for (const std::string mode : {"score", "train"}) {
    const auto fn = mode == "score" ? std::function<void(const Batch&)>(score)
                                    : std::function<void(const Batch&)>(train);
    const auto [ts, tp] =
        median_seconds(a.iters, [&] { fn(shared); }, [&] { fn(separate); });
    for (const auto& [layout, t, tokens] :
         {std::tuple<std::string, double, int64_t>{"shared_prefix", ts, packed.num_tokens},
          std::tuple<std::string, double, int64_t>{"separate", tp, sep_ids.numel()}}) {
      nlohmann::json j = {{"layout", layout},
                          {"mode", mode},
                          {"preset", a.preset},
                          {"layers", config.num_hidden_layers},
                          {"groups", a.groups},
                          {"prompt", a.prompt},
                          {"response", a.response},
                          {"responses", a.responses},
                          {"threads", a.threads},
                          {"tokens", tokens},
                          {"seconds", t},
                          {"groups_per_s", a.groups / t},
                          {"pairs_per_s", pairs / t}};
      std::cout << j.dump() << "\n";
    }
    std::cout << mode << ": shared-prefix / separate pairs/s = " << tp / ts << "x\n";
  }
  return 0;
}
