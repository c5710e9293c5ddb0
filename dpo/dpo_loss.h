// The DPO stage's LossFn: one forward of a micro-batch of pair rows (dpo/pair_rows.h) gives the
// policy's per-pair log-prob sums; with the batch's cached reference sums they make the pair
// losses (dpo/loss.h). Returned, as sums the trainer normalises (core/train/batch.h):
//   sum                        Σ pair losses                           (/ pairs)
//   extra_sums[target_tokens]  rpo_alpha · Σ -log p over chosen's SFT targets (/ their count)
//   metrics (TRL's names)      rewards/chosen, rewards/rejected, rewards/accuracies,
//                              rewards/margins, logps/chosen, logps/rejected (/ pairs);
//                              logits/chosen, logits/rejected: the mean logit over the vocabulary
//                              at counted tokens (/ chosen_tokens, rejected_tokens);
//                              nll_loss (/ target_tokens)
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "core/logprobs.h"
#include "core/model/llama.h"
#include "core/train/batch.h"
#include "dpo/loss.h"

namespace posttrain::dpo {

struct DpoLossConfig {
  LossOptions loss;
  double rpo_alpha = 0.2;
  int64_t logprob_chunk = 4096;
  int64_t keep_logits_bytes = core::kDefaultKeepLogitsBytes;
};

// Per-pair policy log-prob sums of a batch: [P, 2] float32 (chosen, rejected) over the valid
// pair slots in row order, under autograd; *token_logps receives the [B, T] per-token log-probs
// and *hidden the [B, T, H] hidden states when non-null.
at::Tensor pair_logp_sums(core::LlamaModelImpl& model, const core::MicroBatch& batch,
                          int64_t logprob_chunk, int64_t keep_logits_bytes,
                          at::Tensor* token_logps = nullptr, at::Tensor* hidden = nullptr);

core::LossOutput dpo_loss(core::LlamaModelImpl& model, const core::MicroBatch& batch,
                          const DpoLossConfig& config);

}  // namespace posttrain::dpo
