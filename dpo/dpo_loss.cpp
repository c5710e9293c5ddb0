// The DPO LossFn (see dpo_loss.h).
#include "dpo/dpo_loss.h"

#include <ATen/ATen.h>

namespace posttrain::dpo {

at::Tensor pair_logp_sums(core::LlamaModelImpl& model, const core::MicroBatch& batch,
                          int64_t chunk, int64_t keep, at::Tensor* token_logps,
                          at::Tensor* hidden_out) {
  core::ForwardInputs in;
  in.input_ids = batch.require("input_ids");
  in.position_ids = batch.get("position_ids");
  in.document_ids = batch.get("document_ids");
  in.segment_ids = batch.get("segment_ids");
  in.attention_mask = batch.get("attention_mask");
  const at::Tensor hidden = model.hidden_states(in);  // [B, T, H]
  const at::Tensor logp =
      core::target_logprobs(model, hidden, batch.require("targets"), chunk, keep);  // [B, T]
  const at::Tensor& slot = batch.require("dpo_slot");                               // [B, T]
  const at::Tensor& valid = batch.require("pair_valid");                            // [B, K]
  const int64_t B = valid.size(0), K = valid.size(1);
  // Row-local slots 2k + side -> global b * 2K + 2k + side; -1 stays -1.
  const auto rows = at::arange(B, slot.options()).unsqueeze(1) * (2 * K);  // [B, 1]
  const auto index = at::where(slot.ge(0), slot + rows, slot);            // [B, T]
  const at::Tensor sums = core::segment_sums(logp, index, B * 2 * K).view({B, K, 2});
  if (token_logps) *token_logps = logp;
  if (hidden_out) *hidden_out = hidden;
  return sums.index({valid.to(sums.device())});  // [P, 2]
}

namespace {

// Σ over counted tokens of the mean logit over the vocabulary, per side: mean_v(h · W_v) =
// h · mean_v(W_v), so no [tokens, vocab] logits are needed. Detached.
std::pair<at::Tensor, at::Tensor> mean_logit_sums(core::LlamaModelImpl& model,
                                                  const at::Tensor& hidden,
                                                  const at::Tensor& slot) {
  at::NoGradGuard no_grad;
  const auto w_mean = model.lm_head_weight().to(at::kFloat).mean(0);  // [H]
  const auto per_token = at::matmul(hidden.detach().to(at::kFloat), w_mean);  // [B, T]
  const auto s = slot.to(per_token.device());
  const auto counted = s.ge(0);
  const auto is_chosen = counted.logical_and(s.remainder(2).eq(0));
  const auto is_rejected = counted.logical_and(s.remainder(2).eq(1));
  return {per_token.masked_select(is_chosen).sum(), per_token.masked_select(is_rejected).sum()};
}

}  // namespace

core::LossOutput dpo_loss(core::LlamaModelImpl& model, const core::MicroBatch& batch,
                          const DpoLossConfig& cfg) {
  at::Tensor logp, hidden;
  const at::Tensor sums = pair_logp_sums(model, batch, cfg.logprob_chunk, cfg.keep_logits_bytes,
                                         &logp, &hidden);  // [P, 2]
  const auto dev = sums.device();
  const auto valid = batch.require("pair_valid").to(dev);
  const auto ref = batch.require("ref_logps").to(dev).index({valid});       // [P, 2]
  const auto counts = batch.require("pair_counts").to(dev).index({valid});  // [P, 2]
  const LossType type = cfg.loss.type;
  const auto pc = loss_logps(sums.select(1, 0), counts.select(1, 0), type);
  const auto pr = loss_logps(sums.select(1, 1), counts.select(1, 1), type);
  const auto rc = loss_logps(ref.select(1, 0), counts.select(1, 0), type);
  const auto rr = loss_logps(ref.select(1, 1), counts.select(1, 1), type);
  const PairLosses pl = pair_losses(pc, pr, rc, rr, cfg.loss);

  core::LossOutput out;
  out.sum = pl.losses.sum();
  const auto nll_mask = batch.require("nll_mask").to(dev);  // [B, T]
  const auto nll_sum = -(logp * nll_mask).sum();
  if (cfg.rpo_alpha > 0) out.extra_sums["target_tokens"] = nll_sum * cfg.rpo_alpha;
  auto& m = out.metric_sums;
  m["rewards/chosen"] = pl.chosen_rewards.sum();
  m["rewards/rejected"] = pl.rejected_rewards.sum();
  m["rewards/accuracies"] = pl.chosen_rewards.gt(pl.rejected_rewards).to(at::kFloat).sum();
  m["rewards/margins"] = (pl.chosen_rewards - pl.rejected_rewards).sum();
  m["logps/chosen"] = pc.detach().sum();
  m["logps/rejected"] = pr.detach().sum();
  auto [logits_c, logits_r] = mean_logit_sums(model, hidden, batch.require("dpo_slot"));
  m["logits/chosen"] = logits_c;
  m["logits/rejected"] = logits_r;
  m["nll_loss"] = nll_sum.detach();
  out.metric_norms["logits/chosen"] = "chosen_tokens";
  out.metric_norms["logits/rejected"] = "rejected_tokens";
  out.metric_norms["nll_loss"] = "target_tokens";
  for (auto& [name, v] : m) v = v.detach().to(at::kFloat);
  return out;
}

}  // namespace posttrain::dpo
