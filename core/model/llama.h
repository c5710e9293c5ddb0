// The Llama-family decoder: token embedding, RMSNorm, RoPE (plain / llama3 scaling),
// grouped-query attention through at::scaled_dot_product_attention, SwiGLU MLP, and either an
// LM head (tied or untied) or a reward model's scalar score head.
// Parameter names match Hugging Face's state dict ("model.layers.0.self_attn.q_proj.weight",
// "lm_head.weight", "score.weight"), so checkpoints map one to one.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "core/model/llama_config.h"

namespace posttrain::core {

// What one forward pass reads. Shapes: B rows, T tokens.
struct ForwardInputs {
  at::Tensor input_ids;  // [B, T] int64
  // [B, T] int64; undefined = 0..T-1 in every row, or (with document_ids) positions restarting
  // at 0 where each document starts. Packed rows restart positions per document.
  at::Tensor position_ids;
  // [B, T] int64 document index per token; undefined = one document per row. When defined,
  // attention is causal AND confined to tokens of the same document (block-diagonal), so a
  // packed row computes exactly what its documents would compute alone.
  at::Tensor document_ids;
  // [B, T] bool/int, 1 = real token, 0 = padding (right padding). Undefined = all real.
  at::Tensor attention_mask;
};

class LlamaModelImpl : public torch::nn::Module {
 public:
  // Parameters are created with `options` (device, dtype). random_init: fill them as
  // reset_parameters() does with a draw from the global generator; false leaves them
  // uninitialised (the caller loads weights next).
  explicit LlamaModelImpl(const LlamaConfig& config,
                          at::TensorOptions options = at::TensorOptions().dtype(at::kFloat),
                          bool random_init = true);

  // Hugging Face's initialisation: every matrix ~ N(0, initializer_range), norms = 1. With a
  // seed the draw is reproducible and independent of device and dtype (drawn in float32 on
  // CPU, then converted).
  void reset_parameters(std::optional<uint64_t> seed = std::nullopt);

  // Final-norm hidden states, [B, T, hidden_size].
  at::Tensor hidden_states(const ForwardInputs& in);
  // Causal LM: next-token logits [B, T, vocab] from hidden states [.., hidden_size].
  at::Tensor lm_logits(const at::Tensor& hidden);
  // Causal LM: logits [B, T, vocab]. Reward model: rewards [B] (float32) at each row's last
  // non-pad token (per attention_mask, or per pad_token_id when no mask is given).
  at::Tensor forward(const ForwardInputs& in);
  // Reward model only: [B] float32 rewards, see forward().
  at::Tensor rewards(const ForwardInputs& in);

  // The head weight mapping hidden -> vocab, [vocab, hidden] (the embedding when tied).
  // Throws UsageError on a reward model.
  at::Tensor lm_head_weight() const;
  // Reward model only: the score head weight, [1, hidden].
  at::Tensor score_weight() const;
  // RoPE inverse frequencies [head_dim / 2] float32 on CPU (llama3 scaling applied), for
  // decoders that run the layers themselves (core/generate).
  const at::Tensor& rope_inverse_frequencies() const;
  bool is_reward_model() const { return config_.kind == ModelKind::kRewardModel; }
  const LlamaConfig& config() const { return config_; }
  // Recompute each block's activations in backward instead of keeping them.
  void set_activation_checkpointing(bool on) { activation_checkpointing_ = on; }
  bool activation_checkpointing() const { return activation_checkpointing_; }

 private:
  LlamaConfig config_;
  bool activation_checkpointing_ = false;
  // Layers are registered under Hugging Face names; see llama.cpp.
  struct Parts;
  std::shared_ptr<Parts> parts_;
};
TORCH_MODULE(LlamaModel);

}  // namespace posttrain::core
