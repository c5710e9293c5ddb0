// The reward-model stage (`posttrain reward train`): reads rankings (JSONL and store rounds),
// filters and tokenises them (reward/data.h), lays them out in rows (reward/rows.h), and trains
// the reward model (reward/model.h) with the pairwise loss (reward/loss.h) on the shared Trainer.
// Output, resume and data parallelism are the trainer's, exactly as for SFT.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tokenizer/tokenizer.h"
#include "core/train/trainer.h"
#include "reward/config.h"
#include "reward/data.h"

namespace posttrain::reward {

struct RewardData {
  std::vector<RankedTokens> train, eval;
  std::vector<SourceCounts> sources;
  int64_t train_pairs() const;
  int64_t eval_pairs() const;
};

// Reads every configured source, drops what the filters and the length limit say (counted per
// source), holds out eval rankings and applies the source weights. A sequence holding the pad
// token `pad` is an InputError naming its row.
RewardData build_reward_data(const RewardDataOptions& options, const core::Tokenizer& tok,
                             core::ChatFormat format, int64_t pad, uint64_t seed);

// JSONL rankings of `path` (core's preference reader). A row whose responses are identical
// (which core's reader refuses) is dropped and counted as near-duplicate pairs, as are rows
// below min_strength (counted as filtered_strength).
std::vector<Ranking> read_jsonl_rankings(const std::string& path, bool strings_as_text,
                                         const std::optional<datastore::Strength>& min_strength,
                                         SourceCounts* counts);

// Runs the stage from a config resolved against reward_schema(). Prints one JSON line of data
// statistics first and one at the end.
core::TrainResult run_reward(const nlohmann::json& resolved);

}  // namespace posttrain::reward
