// The `posttrain dpo train` config: model, data and dpo sections on top of the trainer's
// optimizer/schedule/training/output sections (core/train/trainer_options.h), so a DPO config
// reads like an SFT one. Names and defaults follow TRL's DPOConfig except rpo_alpha (0.2, as
// Llama 3; TRL's default is none) and the formatting-token mask (Llama 3; TRL has none).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/data/data_loss.h"
#include "core/train/config.h"
#include "dpo/loss.h"
#include "dpo/pair_tokens.h"

namespace posttrain::dpo {

// The full schema of `posttrain dpo train` configs.
core::ConfigSchema dpo_schema();

struct DpoDataOptions {
  struct Source {
    std::string path;
    double weight = 1.0;
  };
  std::vector<Source> sources;           // JSONL pair files
  std::string store;                     // SQLite store, "" = none
  std::vector<int> store_rounds;         // empty = the latest round with pairs
  std::string min_strength = "better";   // or "none": every pair
  double store_weight = 1.0;
  std::string near_duplicates = "normalized";  // store pairs dropped: off|exact|normalized
  double near_duplicate_similarity = 0.0;      // > 0: also word-trigram Jaccard >= this
  std::string eval_path;                 // "" = none
  double eval_fraction = 0.0;
  TruncationOptions truncation;
  bool packing = true;
  bool prompt_completion_as_text = false;
  std::string chat_format = "auto";
  core::DataLossPolicy data_loss;        // data.max_dropped_fraction, data.on_many_dropped
};

struct DpoOptions {
  std::string model;
  std::string tokenizer;  // = model when unset
  std::string reference;  // = model when unset
  LossOptions loss;
  double rpo_alpha = 0.2;  // 0 = no NLL term
  bool mask_format_tokens = true;
  std::vector<std::string> format_tokens;  // empty = the template's formatting labels
  bool reference_cache = true;             // in the store when data.store is set
  int64_t reference_batch_size = 8;        // pairs per reference forward
  DpoDataOptions data;
};

// Reads a config resolved against dpo_schema(); cross-key checks throw InputError naming the
// key.
DpoOptions dpo_options(const nlohmann::json& resolved);

}  // namespace posttrain::dpo
