// Helpers shared by the trainer and data-parallel tests: a very small Llama config/model, and
// float64 vectors passed between a test and its worker processes through binary files.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>

#include "core/logprobs.h"
#include "core/model/llama.h"
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
