// JSONL export from the store. Formats (the --format names of `posttrain store export`):
//   trl       {"prompt","chosen","rejected"} per pair
//   openrlhf  the same with configurable keys; an empty prompt key folds the prompt into
//             chosen/rejected (full conversations)
//   messages  {"messages":[...]} per stored dialogue
// Pair formats may add a "margin" column (ExportOptions::margin).
// Rows come in id order (deterministic); identical output rows are written once. Each value
// keeps the shape it was imported in unless `as` forces text or messages.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "datastore/store.h"

namespace posttrain::datastore {

enum class ExportFormat { kTrl, kOpenRlhf, kMessages };
ExportFormat parse_export_format(const std::string& name);  // UsageError for unknown names

struct ExportOptions {
  ExportFormat format = ExportFormat::kTrl;
  PairFilter filter;  // rounds, min_strength, source, annotator (messages: rounds, source)
  bool expand_rankings =
      false;  // a pair with an edit becomes edited>chosen, edited>rejected, chosen>rejected
  std::optional<Shape> as;  // force every value to text or to messages
  std::string prompt_key = "prompt";
  std::string chosen_key = "chosen";
  std::string rejected_key = "rejected";
  // Adds "margin": the pair's strength margin (datastore/strength.h; 0 when unlabelled), the
  // column TRL's RewardTrainer and OpenRLHF's margin_key read.
  bool margin = false;
};

struct ExportSummary {
  int64_t rows = 0;        // lines written
  int64_t duplicates = 0;  // rows dropped as identical to an earlier one
};

// Writes matching rows to `path` ("-" = stdout).
ExportSummary export_jsonl(Store& store, const std::string& path, const ExportOptions& options);

// Flattening used by `as`: a message list becomes text (a single message: its content;
// several: "\n\nHuman: ..." / "\n\nAssistant: ..." / "\n\nSystem: ..." turns), and text
// becomes a single message with `role`.
Json to_text(const Json& content);
Json to_messages(const Json& content, const std::string& role);

}  // namespace posttrain::datastore
