// The rule that turns a task's judgements into a preference pair (Llama 3 section 4.2.1: the
// annotator picks the better response, says how much better, and may edit it, giving
// edited > chosen > rejected):
//   - a task wanting one judgement: its first judgement is the pair;
//   - a task wanting two (agreement sampling): two that agree make one pair with the weaker
//     of the two strengths; two that disagree make no pair and ask for a third judgement;
//   - after a third: the majority choice (two of three), with the weaker of its strengths.
// The edit (if any) is the earliest edit among the judgements that made the pair. Skips are
// not votes and never reach this rule.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "datastore/annotation_store.h"

namespace posttrain::annotate {

using datastore::Choice;
using datastore::Strength;

struct Vote {
  Choice choice = Choice::kA;
  Strength strength = Strength::kBetter;
  std::optional<int64_t> edited_id;
  std::string annotator;
};

struct PairDecision {
  enum class Kind {
    kWait,       // fewer votes than the task wants
    kPair,       // make the pair below
    kNeedThird,  // two votes disagree: raise the task's wanted count to 3
  };
  Kind kind = Kind::kWait;
  Choice choice = Choice::kA;
  Strength strength = Strength::kMarginallyBetter;
  std::optional<int64_t> edited_id;
  std::vector<std::string> annotators;  // whose votes made the pair, in vote order
};

// `votes` in the order they were cast; `wanted` in 1..3. Throws Error for more votes than
// wanted or wanted outside 1..3 (the queue never lets that happen).
PairDecision decide_pair(const std::vector<Vote>& votes, int wanted);

}  // namespace posttrain::annotate
