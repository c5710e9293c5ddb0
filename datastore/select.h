// Choosing SFT data: which stored dialogues become round R's selected samples (the selections
// table that `sft` with data.store_round reads through Store::selected_samples). `posttrain store
// select` is its command line; `synth --store` selects what it keeps for its own round.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "datastore/store.h"

namespace posttrain::datastore {

// Dialogues matching every given filter.
struct DialogueSelection {
  int round = 0;                 // the round whose SFT data they become
  std::vector<int> from_rounds;  // the dialogues' own rounds (empty: any round)
  std::optional<std::string> source;
  // The synthetic problem's kind (math, code, tool, ...); "none": dialogues with no problem
  // (imported with `store import --format messages`).
  std::optional<std::string> kind;
  // The verdict of the problem's last attempt (pass, fail, error, timeout, ...); dialogues with
  // no attempt recorded match none.
  std::optional<std::string> verdict;
  std::string reason;  // stored with each selection ("" = "store select")
};

struct SelectionSummary {
  int64_t matched = 0;   // dialogues matching the filters
  int64_t selected = 0;  // of those, newly selected (the rest already were, for this round)
};

// Selects the matching dialogues for `selection.round` in one transaction (idempotent).
SelectionSummary select_dialogues(Store& store, const DialogueSelection& selection);

}  // namespace posttrain::datastore
