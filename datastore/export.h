// JSONL export from the store. Formats (the --format names of `posttrain store export`):
//   trl       {"prompt","chosen","rejected","strength"} per pair: TRL's explicit-prompt
//             preference form (DPOTrainer, RewardTrainer)
//   openrlhf  OpenRLHF's reward/DPO form: no prompt key, chosen and rejected are whole
//             conversations as message lists (for --apply_chat_template; OpenRLHF's DPO takes
//             chosen[:-1] as the prompt), plus "strength"; --prompt-key K keeps the prompt apart
//             under K, --chosen-key/--rejected-key rename those columns
//   messages  {"messages":[...]} per stored dialogue
// Every pair row has "strength" (the label's name, or null when unlabelled); `margin` adds
// "margin" (datastore/strength.h), the column TRL's RewardTrainer and OpenRLHF read.
// (`store import --format annotations` reads strength back; trl ignores it.)
// One shape per file: every prompt/chosen/rejected value is text, or every one is a message list
// (messages whenever any written value is one; openrlhf: messages unless `as` says text), so
// Arrow-based readers (`datasets`) load the file. A text prompt becomes one user message, a text
// response one assistant message; messages become text as to_text() says.
// Rows come in id order (deterministic); identical output rows are written once.
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
  // Unset: the format's own (trl "prompt", openrlhf none). "" folds the prompt into
  // chosen/rejected.
  std::optional<std::string> prompt_key;
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
