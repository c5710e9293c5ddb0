// The model's forward for decoding from a paged KV cache: one flat batch of tokens from many
// sequences (decode tokens and prefill chunks mixed), each token's key and value written into
// its cache slot, attention over the pages (paged_attention.h), and logits only for the tokens
// that need a next token. It reads LlamaModelImpl's weights by their Hugging Face names and
// runs the same kernels as the training forward (fused add + RMSNorm, one q/k/v GEMM, RoPE,
// SwiGLU), so on CPU float32 its numbers match LlamaModelImpl::forward to rounding.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "core/generate/kv_cache.h"
#include "core/generate/paged_attention.h"
#include "core/model/llama.h"

namespace posttrain::core::generate {

// One step's flat batch of N tokens.
struct StepInputs {
  std::vector<int64_t> token_ids;     // [N]
  std::vector<int64_t> positions;     // [N]
  std::vector<int64_t> slots;         // [N] cache slot each token's key/value is written to
  std::vector<AttentionRun> runs;     // each sequence's run of consecutive tokens
  std::vector<int64_t> logit_tokens;  // [M] indices into the N tokens that need logits
};

class PagedDecoder {
 public:
  // Keeps a reference to the model's weights (the model must outlive the decoder). Throws
  // UsageError for a reward model.
  explicit PagedDecoder(LlamaModelImpl& model);

  const LlamaConfig& config() const { return config_; }
  at::Device device() const { return embed_.device(); }
  at::ScalarType dtype() const { return embed_.scalar_type(); }

  // Runs the step (caller holds InferenceMode or NoGradGuard): writes every token's keys and
  // values into `cache` and returns float32 logits [M, vocab] on the CPU, row i for token
  // logit_tokens[i].
  at::Tensor step(const StepInputs& in, KvCache& cache);

 private:
  struct Layer {
    at::Tensor q, k, v, o, gate, up, down, input_norm, post_norm;
  };
  LlamaConfig config_;
  at::Tensor embed_, final_norm_, lm_head_, inv_freq_;
  std::vector<Layer> layers_;
};

}  // namespace posttrain::core::generate
