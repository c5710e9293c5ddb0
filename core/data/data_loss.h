// When the length limit cuts a large share of a source (truncated, or dropped as too long or
// left with nothing to train on), the run says so in words on standard error, or stops when the
// config asks for that. One definition for the sft, reward and dpo stages: the config keys
// (data.max_dropped_fraction, data.on_many_dropped) and the check over each source's counts.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <ostream>
#include <string>
#include <vector>

namespace posttrain::core {

class ConfigSchema;

// One source's counts, as a stage's data summary has them.
struct SourceLoss {
  std::string source;     // its name in the data line (path, STORE#round=R, ...)
  int64_t read = 0;       // examples (rows, rankings, pairs) the length limit saw
  int64_t truncated = 0;  // cut to the limit, kept
  int64_t dropped = 0;    // left out: too long, or nothing left to train on
};

enum class ManyDropped { kWarn, kError };

struct DataLossPolicy {
  double max_fraction = 0.1;  // a source with a larger share truncated + dropped is reported
  ManyDropped on_many = ManyDropped::kWarn;
};

// Adds data.max_dropped_fraction and data.on_many_dropped to a stage's schema.
void add_data_loss_keys(ConfigSchema* schema);
// Reads them back from a resolved config.
DataLossPolicy data_loss_policy(const nlohmann::json& resolved);

// One sentence per source whose (truncated + dropped) / read exceeds the policy's fraction, in
// source order; empty when none does. `limit` names the length keys ("data.max_seq_len").
std::vector<std::string> describe_data_loss(const std::vector<SourceLoss>& sources,
                                            const DataLossPolicy& policy, const std::string& limit);

// The check each stage runs once its data is built: with on_many_dropped warn, the sentences go
// to `warn` as "warning: STAGE: ..." lines (when non-null: the main rank passes std::cerr, the
// others nullptr); with error, a UsageError holding them, on every rank (they all read the same
// data; the CLI already names the command, so the error does not repeat STAGE).
void check_data_loss(const std::vector<SourceLoss>& sources, const DataLossPolicy& policy,
                     const std::string& stage, const std::string& limit, std::ostream* warn);

}  // namespace posttrain::core
