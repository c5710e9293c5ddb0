// Building annotation tasks from a round's candidates: for each prompt with at least two
// responses in the round that no human has judged yet (and no task in the round), one task with two
// of its responses — the highest-scored under the reward model and a random other when the prompt
// has scores, two at random otherwise — shown in random order (A/B carries no hint of the score). A
// fraction of the tasks (agreement sampling) wants two judgements.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "datastore/store.h"

namespace posttrain::annotate {

struct TaskSelection {
  std::optional<int> round;           // default: the latest round that has responses
  std::optional<std::string> source;  // only prompts whose source is this
  double agreement = 0.1;             // fraction of new tasks judged by two annotators
  uint64_t seed = 0;                  // picks, sides and agreement draws
};

struct BuildSummary {
  int round = 0;
  int64_t prompts = 0;  // prompts with two or more unjudged candidates
  int64_t added = 0;    // tasks added (one per such prompt)
  int64_t doubly = 0;   // of those, wanting two judgements
};

// Adds the tasks in one transaction. UsageError when agreement is outside [0, 1].
BuildSummary build_tasks(datastore::Store& store, const TaskSelection& selection);

}  // namespace posttrain::annotate
