// Helpers shared by the trainer and data-parallel tests: a very small Llama config/model, token
// examples with a learnable pattern, parameter comparison, and float64 vectors passed between a
// test and its worker processes through binary files.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <vector>

#include "core/logprobs.h"
#include "core/model/llama.h"
#include "core/data/examples.h"
#include "core/train/batch.h"

namespace posttrain::core::testing {

// 2 layers, hidden 32, 4 heads over 2 kv heads of dim 8, vocabulary 64.
inline LlamaConfig tiny_config() {
  LlamaConfig c = preset_config("tiny");
  c.vocab_size = 64;
  c.num_hidden_layers = 2;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  return c;
}

inline LlamaModel tiny_model(uint64_t seed) {
  LlamaModel m(tiny_config());
  m->reset_parameters(seed);
  return m;
}

// n examples of varied length (3..9 tokens) over a 64-token vocabulary; the first two tokens are
// the "prompt". A simple pattern (next = prev + 1 mod 64) so the loss can fall.
inline std::shared_ptr<const std::vector<TokenizedExample>> examples(int n, uint64_t seed) {
  std::mt19937 rng(seed);
  auto out = std::make_shared<std::vector<TokenizedExample>>();
  for (int i = 0; i < n; ++i) {
    const int len = 3 + static_cast<int>(rng() % 7);
    std::vector<int64_t> ids;
    const int64_t t = rng() % 64;
    for (int k = 0; k < len; ++k) ids.push_back((t + k) % 64);
    std::vector<uint8_t> mask(len, 1);
    mask[0] = mask[1] = 0;
    out->push_back(make_targets(ids, mask));
  }
  return out;
}

// The largest absolute difference between two parameter lists (or, with grads, their gradients).
inline double max_abs_diff(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b,
                           bool grads) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const at::Tensor x = grads ? a[i].grad() : a[i], y = grads ? b[i].grad() : b[i];
    worst = std::max(worst, (x - y).abs().max().item<double>());
  }
  return worst;
}

// A float64 vector in a binary file (count, then values).
inline void write_flat(const std::filesystem::path& path, const at::Tensor& values) {
  at::Tensor all = values.detach().reshape({-1}).to(at::kDouble).contiguous();
  std::ofstream out(path, std::ios::binary);
  const int64_t n = all.numel();
  out.write(reinterpret_cast<const char*>(&n), sizeof(n));
  out.write(reinterpret_cast<const char*>(all.data_ptr<double>()), n * sizeof(double));
}

inline at::Tensor read_flat(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing worker output " << path;
  int64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), sizeof(n));
  at::Tensor all = at::empty({n}, at::kDouble);
  in.read(reinterpret_cast<char*>(all.data_ptr<double>()), n * sizeof(double));
  return all;
}

// The loss every trainer test uses: minus the sum of the target tokens' log-probs of a
// micro-batch (log-probs in chunks of 16 tokens).
inline LossFn sum_loss() {
  return [](LlamaModel& m, const MicroBatch& b) {
    ForwardInputs in{b.get("input_ids"), b.get("position_ids"), b.get("document_ids"),
                     b.get("attention_mask")};
    return -target_logprobs(*m, m->hidden_states(in), b.get("targets"), 16).sum();
  };
}

}  // namespace posttrain::core::testing
