// The SFT loss (see sft.h).
#include <ATen/ATen.h>

#include "core/logprobs.h"
#include "core/target_hits.h"
#include "sft/sft.h"

namespace posttrain::sft {

namespace {

// -Σ log p(target) over a micro-batch; `hits` (may be null) gets where the target is the argmax.
at::Tensor negative_logprob_sum(core::LlamaModelImpl& model, const core::MicroBatch& batch,
                                int64_t logprob_chunk, int64_t keep_logits_bytes,
                                at::Tensor* hits) {
  core::ForwardInputs in;
  in.input_ids = batch.require("input_ids");
  in.position_ids = batch.get("position_ids");
  in.document_ids = batch.get("document_ids");
  in.attention_mask = batch.get("attention_mask");
  at::Tensor hidden = model.hidden_states(in);  // [B, T, H]
  at::Tensor logp = core::target_logprobs_and_hits(model, hidden, batch.require("targets"), hits,
                                                   logprob_chunk, keep_logits_bytes);
  return -logp.sum();  // [B, T] float32 with 0 at ignored positions -> scalar
}

}  // namespace

at::Tensor sft_loss_sum(core::LlamaModelImpl& model, const core::MicroBatch& batch,
                        int64_t logprob_chunk, int64_t keep_logits_bytes) {
  return negative_logprob_sum(model, batch, logprob_chunk, keep_logits_bytes, nullptr);
}

core::LossOutput sft_loss(core::LlamaModelImpl& model, const core::MicroBatch& batch,
                          int64_t logprob_chunk, int64_t keep_logits_bytes) {
  at::Tensor hits;  // [B, T] bool
  core::LossOutput out(
      negative_logprob_sum(model, batch, logprob_chunk, keep_logits_bytes, &hits));
  // Divided by the step's target tokens (num_terms) like the loss: TRL's mean_token_accuracy.
  out.metric_sums["mean_token_accuracy"] = hits.sum().to(at::kFloat);
  return out;
}

}  // namespace posttrain::sft
