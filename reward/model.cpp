// Reward model loading, pad choice and ranking rewards (see model.h).
#include "reward/model.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/irange.h>
#include <torch/nn/module.h>

#include "common/error.h"
#include "core/checkpoint/hf_checkpoint.h"

namespace posttrain::reward {

namespace {

// Tokens a chat or text row can end a sequence with, so never the pad.
bool is_end_token(const core::Tokenizer& tok, int64_t id) {
  const auto eos = tok.eos_ids();
  if (std::find(eos.begin(), eos.end(), id) != eos.end()) return true;
  for (const char* t : {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end_of_text|>",
                        "<|endoftext|>", "</s>"}) {
    if (tok.token_id(t) == id) return true;
  }
  return false;
}

}  // namespace

int64_t reward_pad_id(const core::Tokenizer& tok, std::optional<int64_t> configured) {
  if (configured) {
    if (*configured < 0 || *configured >= tok.vocab_size()) {
      throw InputError(Location{"", 0, "model.pad_token_id"},
                       "outside the vocabulary [0, " + std::to_string(tok.vocab_size()) + ")");
    }
    if (is_end_token(tok, *configured)) {
      throw InputError(Location{"", 0, "model.pad_token_id"},
                       "an end-of-sequence/end-of-turn token: the reward would be read before it");
    }
    return *configured;
  }
  if (auto p = tok.pad_id(); p && !is_end_token(tok, *p)) return *p;
  for (const char* t : {"<|finetune_right_pad_id|>", "<|reserved_special_token_0|>",
                        "<|reserved_special_token_2|>", "<pad>", "[PAD]", "<|pad|>"}) {
    if (auto id = tok.token_id(t); id && !is_end_token(tok, *id)) return *id;
  }
  throw UsageError(
      "the tokenizer has no reserved pad token for the reward model (its pad, if any, is an end "
      "token); set model.pad_token_id to a token id the data never holds");
}

core::LlamaModel load_reward_model(const std::string& dir, int64_t pad, at::Device device,
                                   uint64_t seed) {
  core::LlamaConfig cfg = core::load_config(dir);
  if (cfg.kind == core::ModelKind::kRewardModel) {
    auto m = core::load_model(dir, device, at::kFloat);
    cfg.pad_token_id = pad;
    core::LlamaModel out(cfg, at::TensorOptions().dtype(at::kFloat).device(device), false);
    auto src = core::state_dict(*m), dst = core::state_dict(*out);
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < dst.size(); ++i) dst[i].second.copy_(src[i].second);
    return out;
  }
  auto lm = core::load_model(dir, at::kCPU, at::kFloat);
  core::LlamaConfig rc = cfg;
  rc.kind = core::ModelKind::kRewardModel;
  rc.pad_token_id = pad;
  rc.tie_word_embeddings = false;
  core::LlamaModel rm(rc, at::TensorOptions().dtype(at::kFloat).device(device), false);
  std::map<std::string, at::Tensor> src;
  for (auto& [name, t] : core::state_dict(*lm)) src[name] = t;
  at::NoGradGuard no_grad;
  for (auto& [name, t] : core::state_dict(*rm)) {
    if (name == "score.weight") {
      // Drawn in float32 on the CPU from its own generator: the same head on every device.
      auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
      auto w = at::empty(t.sizes(), at::kFloat);
      w.normal_(0.0, cfg.initializer_range, gen);
      t.copy_(w);
    } else {
      t.copy_(src.at(name));
    }
  }
  return rm;
}

at::Tensor ranking_rewards(core::LlamaModelImpl& model, const core::MicroBatch& batch) {
  const at::Tensor& ids = batch.require("input_ids");
  const at::Tensor& index = batch.require("reward_index");  // [B, K]
  const int64_t B = index.size(0), K = index.size(1);
  core::ForwardInputs in;
  at::Tensor flat_index;  // [N] positions into the flattened [rows * T] hidden states
  int64_t T = 0;
  if (ids.dim() == 3) {  // separate: [B, K, T] sequences
    T = ids.size(2);
    in.input_ids = ids.reshape({B * K, T});
    in.attention_mask = batch.require("attention_mask").reshape({B * K, T});
    auto row = at::arange(B * K, index.options()).view({B, K});
    flat_index = (row * T + index).reshape({-1});
  } else {  // one row per ranking: [B, T]
    T = ids.size(1);
    in.input_ids = ids;
    in.position_ids = batch.require("position_ids");
    in.segment_ids = batch.require("segment_ids");
    in.attention_mask = batch.get("attention_mask");  // padding: no segment (undefined = none)
    auto row = at::arange(B, index.options()).view({B, 1});
    flat_index = (row * T + index).reshape({-1});
  }
  at::Tensor hidden = model.hidden_states(in);  // [rows, T, H]
  const int64_t H = hidden.size(-1);
  at::Tensor picked = hidden.reshape({-1, H}).index_select(0, flat_index);  // [B*K, H]
  at::Tensor w = model.score_weight();                                      // [1, H]
  return at::matmul(picked, w.to(picked.scalar_type()).t()).view({B, K}).to(at::kFloat);
}

core::LossOutput reward_loss(core::LlamaModelImpl& model, const core::MicroBatch& batch,
                             const PairwiseLossOptions& options) {
  PairTensors pairs{batch.require("pair_better"), batch.require("pair_worse"),
                    batch.require("pair_margin"), batch.require("pair_mask")};
  const auto s = pairwise_loss_sums(ranking_rewards(model, batch), pairs, options);
  core::LossOutput out(s.loss);
  out.metric_sums["accuracy"] = s.correct;
  out.metric_sums["margin"] = s.margin;
  out.metric_sums["reward_chosen"] = s.chosen;
  out.metric_sums["reward_rejected"] = s.rejected;
  return out;
}

}  // namespace posttrain::reward
