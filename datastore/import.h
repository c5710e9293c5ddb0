// JSONL import into the store. Formats (the --format names of `posttrain store import`):
//   trl          {"prompt","chosen","rejected"}, each a string or a message list; without
//                "prompt", TRL's implicit-prompt form: chosen and rejected are whole
//                conversations and their common prefix (messages; for texts, characters up to
//                the first difference, a space before it left to the answers) is the prompt;
//                an optional "strength" (what the trl export writes) is kept
//   hh-rlhf      {"chosen","rejected"}: full "\n\nHuman: ...\n\nAssistant: ..." transcripts; the
//                shared prefix up to the last "\n\nAssistant:" becomes a message-list prompt and
//                the two final answers single assistant messages
//   ranking      {"prompt","responses":[...],"ranking":[indices, best first],"edited"?}: every
//                ordered pair of ranked responses; "edited" (ranked above all) rides on each pair
//   annotations  a trl row plus optional "strength", "annotator", "edited", "round", "source"
//   messages     {"messages":[...]} SFT dialogues (into the dialogues table)
// The whole import is one transaction: by default the first malformed line (reported with file,
// line and field) rolls everything back; with skip_bad each bad line is reported and skipped.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "common/error.h"
#include "datastore/store.h"

namespace posttrain::datastore {

enum class ImportFormat { kTrl, kHhRlhf, kRanking, kAnnotations, kMessages };
// Parses "trl", "hh-rlhf", "ranking", "annotations", "messages"; UsageError otherwise.
ImportFormat parse_import_format(const std::string& name);

struct ImportOptions {
  ImportFormat format = ImportFormat::kTrl;
  std::optional<int> round;           // default for rows without their own (else 0)
  std::optional<std::string> source;  // default for rows without their own (else file stem)
  bool skip_bad = false;
  // Called for each skipped line (skip_bad only); default prints nothing.
  std::function<void(const InputError&)> on_skipped;
  // Called every `progress_every` lines with the number of lines read so far.
  std::function<void(int64_t lines)> on_progress;
  int64_t progress_every = 1000;
};

struct ImportSummary {
  int64_t lines = 0;       // non-blank lines read
  int64_t imported = 0;    // new pairs (dialogues for the messages format)
  int64_t duplicates = 0;  // pairs/dialogues already in the store (or earlier in the file)
  int64_t skipped = 0;     // bad lines skipped (skip_bad)
};

// Imports `path` ("-" = stdin) into `store` in a single transaction. Throws InputError for the
// first bad line unless skip_bad (the store is then unchanged).
ImportSummary import_jsonl(Store& store, const std::string& path, const ImportOptions& options);

}  // namespace posttrain::datastore
