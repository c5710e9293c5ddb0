// Supervised fine-tuning on chat or prompt/completion data. The stage builds its config schema
// (model + data sections on top of the trainer's optimizer/schedule/training/output), turns the
// configured sources into tokenised, mixed, length-limited examples, lays them out in (packed)
// rows, and hands them with sft_loss_sum to the shared Trainer.
//
// Loss: -log p over target tokens = weighted assistant content plus the end token of those turns
// (RenderedChat::sft_target_mask), summed per micro-batch; the trainer divides by the step's
// target-token count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "core/data/mixture.h"
#include "core/logprobs.h"
#include "core/model/llama.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/batch.h"
#include "core/train/config.h"
#include "core/train/trainer.h"

namespace posttrain::sft {

// The full schema of `posttrain sft` configs (model, data, optimizer, schedule, training, output).
core::ConfigSchema sft_schema();

// The data section, typed.
struct SftDataOptions {
  struct Source {
    std::string path;
    double weight = 1.0;
  };
  std::vector<Source> sources;
  std::string store;           // SQLite store path, "" = none
  int store_round = -1;        // its round whose selected samples are read
  double store_weight = 1.0;
  std::string eval_path;       // "" = none
  double eval_fraction = 0.0;
  int64_t max_seq_len = 2048;
  core::OverlongPolicy overlong = core::OverlongPolicy::kTruncate;
  bool packing = true;
  bool prompt_completion_as_text = false;
  std::string chat_format = "auto";
};
SftDataOptions sft_data_options(const nlohmann::json& resolved);

// Reads, tokenises, limits, splits and mixes the configured data.
core::Mixture build_sft_data(const SftDataOptions& options, const core::Tokenizer& tokenizer,
                             core::ChatFormat format, uint64_t seed);

// The SFT loss of one micro-batch (tensors of core/data/packing.h on the model's device): the
// SUM over target tokens of -log p(target), float32 scalar under autograd.
at::Tensor sft_loss_sum(core::LlamaModelImpl& model, const core::MicroBatch& batch,
                        int64_t logprob_chunk,
                        int64_t keep_logits_bytes = core::kDefaultKeepLogitsBytes);

// Runs the stage from a config resolved against sft_schema(). Reads the data-parallel layout
// from the environment (RANK, WORLD_SIZE, ...). Prints one JSON line of data statistics.
core::TrainResult run_sft(const nlohmann::json& resolved);

}  // namespace posttrain::sft
