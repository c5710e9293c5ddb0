// The reward model of the stage: a backbone plus the scalar score head of Hugging Face's
// LlamaForSequenceClassification (score.weight [1, hidden], no bias, num_labels 1), started from
// a causal LM (fresh head) or a reward-model checkpoint, and its rewards on ranking rows.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "core/model/llama.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/batch.h"
#include "reward/loss.h"

namespace posttrain::reward {

// The pad token saved in the reward model's config.json. The reward is read at the last
// non-pad token (transformers' rule), so the pad must never be a token the data holds: never an
// end-of-sequence or end-of-turn token. `configured` (model.pad_token_id) wins when given; else
// the tokenizer's pad token when it is not such a token; else the first reserved special token
// the tokenizer has (<|finetune_right_pad_id|>, <|reserved_special_token_0|>, <pad>, ...).
// Throws UsageError naming model.pad_token_id when none fits.
int64_t reward_pad_id(const core::Tokenizer& tok, std::optional<int64_t> configured);

// Loads `dir` as a reward model with pad_token_id = pad, float32 on `device`. A causal LM gets
// its backbone and a score head drawn from N(0, initializer_range) with `seed` (its LM head is
// dropped); a reward model is loaded as is (its pad_token_id replaced by `pad`).
core::LlamaModel load_reward_model(const std::string& dir, int64_t pad, at::Device device,
                                   uint64_t seed);

// Rewards [B, K] float32 of a ranking micro-batch (reward/rows.h, either layout): the score head
// at each response's last token.
at::Tensor ranking_rewards(core::LlamaModelImpl& model, const core::MicroBatch& batch);

// The stage's LossFn body: the pairwise loss sums of the batch plus metric sums "accuracy",
// "margin", "reward_chosen", "reward_rejected" (per pair; the trainer divides by the pairs).
core::LossOutput reward_loss(core::LlamaModelImpl& model, const core::MicroBatch& batch,
                             const PairwiseLossOptions& options);

}  // namespace posttrain::reward
