// SFT's data section: JSONL sources and a store round's selected samples, tokenised, mixed by
// weight with a seeded eval split and length limits (core/data/mixture.h), laid out as (packed)
// rows (core/data/packing.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/data/data_loss.h"
#include "core/data/mixture.h"
#include "core/data/packing.h"
#include "core/tokenizer/tokenizer.h"

namespace posttrain::sft {

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
  core::DataLossPolicy data_loss;  // data.max_dropped_fraction, data.on_many_dropped
};
// Reads and cross-checks the data section of a resolved config (InputError naming the key).
SftDataOptions sft_data_options(const nlohmann::json& resolved);


// Reads, tokenises, limits, splits and mixes the configured data.
core::Mixture build_sft_data(const SftDataOptions& options, const core::Tokenizer& tokenizer,
                             core::ChatFormat format, uint64_t seed);

struct SftRows {
  std::shared_ptr<core::TokenRowDataset> train, eval;  // eval null when there is none
  nlohmann::json summary;  // the {"event": "data"} line (printed when asked)
};
// Lays the mixture out as rows (eval in file order); `print`: the {"event": "data"} line with
// each source's counts and, when the length limit cut too large a share of a source, a warning
// on stderr (core/data/data_loss.h; UsageError instead under data.on_many_dropped = error).
// Throws UsageError when no training example is left.
SftRows make_sft_rows(core::Mixture mix, const SftDataOptions& options,
                      const core::Tokenizer& tokenizer, uint64_t seed, bool print);

}  // namespace posttrain::sft
