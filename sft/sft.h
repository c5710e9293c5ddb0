// Supervised fine-tuning on chat or prompt/completion data: the config schema (model and data
// sections on top of the trainer's), the data (sft_data.h), the loss, and the stage runner,
// which hands them to core's run_stage (core/train/stage.h).
//
// Loss: -log p over target tokens = weighted assistant content plus the end token of those turns
// (RenderedChat::sft_target_mask), summed per micro-batch; the trainer divides by the step's
// target-token count (MicroBatch::num_terms).
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "core/logprobs.h"
#include "core/model/llama.h"
#include "core/train/batch.h"
#include "core/train/config.h"
#include "core/train/trainer.h"
#include "sft/sft_data.h"

namespace posttrain::sft {

// The full schema of `posttrain sft` configs (model, data, optimizer, schedule, training, output).
core::ConfigSchema sft_schema();

// The SFT loss of one micro-batch (tensors of core/data/packing.h on the model's device): the
// SUM over target tokens of -log p(target), float32 scalar under autograd.
at::Tensor sft_loss_sum(core::LlamaModelImpl& model, const core::MicroBatch& batch,
                        int64_t logprob_chunk,
                        int64_t keep_logits_bytes = core::kDefaultKeepLogitsBytes);

// sft_loss_sum with the metric mean_token_accuracy (TRL's: the share of target tokens that are
// the model's argmax prediction), from the same logits. The stage trains with this.
core::LossOutput sft_loss(core::LlamaModelImpl& model, const core::MicroBatch& batch,
                          int64_t logprob_chunk,
                          int64_t keep_logits_bytes = core::kDefaultKeepLogitsBytes);

// Runs the stage from a config resolved against sft_schema(). Reads the data-parallel layout
// from the environment (RANK, WORLD_SIZE, ...). Prints one JSON line of data statistics.
core::TrainResult run_sft(const nlohmann::json& resolved);

}  // namespace posttrain::sft
