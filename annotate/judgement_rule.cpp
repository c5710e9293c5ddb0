#include "annotate/judgement_rule.h"

#include <algorithm>

#include "common/error.h"

namespace posttrain::annotate {
namespace {

// The pair of the votes that chose `choice`: weakest strength, earliest edit.
PairDecision pair_of(const std::vector<Vote>& votes, Choice choice) {
  PairDecision d;
  d.kind = PairDecision::Kind::kPair;
  d.choice = choice;
  bool first = true;
  for (const Vote& v : votes) {
    if (v.choice != choice) continue;
    // Strength enum values grow with the margin (marginally 0 ... significantly 3).
    d.strength = first ? v.strength : std::min(d.strength, v.strength);
    first = false;
    if (!d.edited_id && v.edited_id) d.edited_id = v.edited_id;
    d.annotators.push_back(v.annotator);
  }
  return d;
}

}  // namespace

PairDecision decide_pair(const std::vector<Vote>& votes, int wanted) {
  if (wanted < 1 || wanted > 3) throw Error("decide_pair: wanted must be 1, 2 or 3");
  if (static_cast<int>(votes.size()) > wanted) {
    throw Error("decide_pair: " + std::to_string(votes.size()) + " votes for a task wanting " +
                std::to_string(wanted));
  }
  if (static_cast<int>(votes.size()) < wanted) return {};
  if (wanted == 1) return pair_of(votes, votes[0].choice);
  if (wanted == 2) {
    if (votes[0].choice == votes[1].choice) return pair_of(votes, votes[0].choice);
    PairDecision d;
    d.kind = PairDecision::Kind::kNeedThird;
    return d;
  }
  // Three votes over two choices: one choice has at least two.
  int a = static_cast<int>(std::count_if(votes.begin(), votes.end(),
                                         [](const Vote& v) { return v.choice == Choice::kA; }));
  return pair_of(votes, a >= 2 ? Choice::kA : Choice::kB);
}

}  // namespace posttrain::annotate
