// `posttrain reward train` configs: the model, data and loss sections on top of the trainer's
// optimizer/schedule/training/output sections (core/train/trainer_options.h), as SFT does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/data/data_loss.h"
#include "core/data/mixture.h"
#include "core/data/near_duplicate.h"
#include "core/train/config.h"
#include "datastore/store.h"
#include "reward/loss.h"
#include "reward/rows.h"

namespace posttrain::reward {

// The full schema (model, data, loss, optimizer, schedule, training, output).
core::ConfigSchema reward_schema();

struct RewardDataOptions {
  struct Source {
    std::string path;
    double weight = 1.0;
  };
  std::vector<Source> sources;
  std::string store;             // "" = none
  std::vector<int> store_rounds;  // empty = every round
  double store_weight = 1.0;
  std::string eval_path;
  double eval_fraction = 0.0;
  int64_t max_seq_len = 2048;
  core::OverlongPolicy overlong = core::OverlongPolicy::kTruncate;
  bool strings_as_text = false;  // data.prompt_completion = text
  std::string chat_format = "auto";
  std::optional<datastore::Strength> min_strength = datastore::Strength::kBetter;
  core::NearDuplicateOptions near_duplicate;
  Layout layout = Layout::kOneRow;
  core::DataLossPolicy data_loss;  // data.max_dropped_fraction, data.on_many_dropped
};
RewardDataOptions reward_data_options(const nlohmann::json& resolved);
PairwiseLossOptions reward_loss_options(const nlohmann::json& resolved);

}  // namespace posttrain::reward
