// The DPO stage (Llama 3 section 4.1.4) on the shared trainer, built like sft/: the config
// schema (dpo/options.h), pairs from JSONL and the store (dpo/pair_data.h), reference log-probs
// computed once before training and cached (dpo/reference.h, dpo/ref_cache.h), pair rows with
// the prompt shared by chosen and rejected (dpo/pair_rows.h), and the loss (dpo/dpo_loss.h).
#pragma once

#include <nlohmann/json.hpp>

#include "core/train/trainer.h"
#include "dpo/reference.h"

namespace posttrain::dpo {

struct DpoResult {
  core::TrainResult train;
  ReferenceStats reference;  // how many reference values were cached / computed, and forwards
  int64_t train_pairs = 0, eval_pairs = 0;
};

// Runs the stage from a config resolved against dpo_schema(). Reads the data-parallel layout
// from the environment. Prints one JSON line of data statistics (with the reference cache's
// hits and forwards) and one when done.
DpoResult run_dpo(const nlohmann::json& resolved);

}  // namespace posttrain::dpo
