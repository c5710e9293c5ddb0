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
  // [B, T] int64 shared-prefix segments (core/model/attention_spans.h); undefined = none.
  // 0 = the shared prefix of its document, s >= 1 = segment s of that document. A token of
  // segment s >= 1 attends to its document's prefix tokens and to its own segment's tokens up to
  // itself; prefix tokens attend causally within the prefix. The prefix comes first in its
  // document and each segment is one contiguous run (UsageError otherwise). Without
  // position_ids, segment tokens continue the prefix's positions (each segment from the same
  // position): the layout core/data/shared_prefix.h writes, which also gives positions.
  // (The initializer keeps four-field brace initialisations, written before this field,
  // free of -Wmissing-field-initializers.)
  at::Tensor segment_ids = {};
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
  // Reward model only: [B] float32 rewards, see forward(). With segment_ids this is still the
  // row's last real token; per-segment rewards are rewards_at / segment_rewards.
  at::Tensor rewards(const ForwardInputs& in);
  // Reward model only: the score head at every token, [B, T] float32 (differentiable).
  at::Tensor token_rewards(const ForwardInputs& in);
  // Reward model only: [B, K] float32 rewards read at token indices `last` [B, K] int64 (-1 =
  // none: 0 there), e.g. each segment's last token (segment_last_tokens).
  at::Tensor rewards_at(const ForwardInputs& in, const at::Tensor& last);
  // Reward model only: the reward of every segment (s >= 1) of every row, [B, K] float32 with K
  // the most segments in a row, in row order (-1 positions of segment_last_tokens give 0).
  at::Tensor segment_rewards(const ForwardInputs& in);

  // The head weight mapping hidden -> vocab, [vocab, hidden] (the embedding when tied).
  // Throws UsageError on a reward model.
  at::Tensor lm_head_weight() const;
  // Reward model only: the score head weight, [1, hidden].
  at::Tensor score_weight() const;
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

// The last token of every segment (segment id >= 1) of each row, in row order: [B, K] int64 on
// segment_ids' device, K the most segments in one row, -1 after a row's last segment. Padding
// (attention_mask 0) belongs to no segment; document_ids separate segments of equal id in
// neighbouring documents (both may be undefined).
at::Tensor segment_last_tokens(const at::Tensor& segment_ids, const at::Tensor& document_ids,
                               const at::Tensor& attention_mask);

}  // namespace posttrain::core
