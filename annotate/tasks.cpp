#include "annotate/tasks.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "datastore/annotation_store.h"

namespace posttrain::annotate {
namespace {

using datastore::Candidate;

// Index of the highest-scored candidate (lowest response id on ties), or -1 when none has a
// reward-model score.
int best_scored(const std::vector<Candidate>& group) {
  int best = -1;
  for (size_t i = 0; i < group.size(); ++i) {
    if (!group[i].reward) continue;
    if (best < 0 || *group[i].reward > *group[best].reward) best = static_cast<int>(i);
  }
  return best;
}

// Two distinct indices into `group` (size >= 2): the best-scored and a random other, or two
// at random.
std::pair<int, int> pick_two(const std::vector<Candidate>& group, std::mt19937_64& rng) {
  const int n = static_cast<int>(group.size());
  int first = best_scored(group);
  if (first < 0) first = std::uniform_int_distribution<int>(0, n - 1)(rng);
  int other = std::uniform_int_distribution<int>(0, n - 2)(rng);
  if (other >= first) ++other;
  return {first, other};
}

}  // namespace

BuildSummary build_tasks(datastore::Store& store, const TaskSelection& sel) {
  if (!(sel.agreement >= 0 && sel.agreement <= 1)) {
    throw UsageError("--agreement must be in [0, 1], got " + std::to_string(sel.agreement));
  }
  datastore::AnnotationStore ann(store);
  BuildSummary sum;
  auto tx = store.transaction();
  std::optional<int> round = sel.round ? sel.round : ann.latest_response_round();
  if (!round) return sum;  // no responses at all
  sum.round = *round;
  std::vector<Candidate> all = ann.unjudged_candidates(*round, sel.source);
  std::mt19937_64 rng(sel.seed);
  std::vector<datastore::NewTask> tasks;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    while (j < all.size() && all[j].prompt_id == all[i].prompt_id) ++j;
    std::vector<Candidate> group(all.begin() + i, all.begin() + j);
    i = j;
    if (group.size() < 2) continue;
    auto [x, y] = pick_two(group, rng);
    if (std::bernoulli_distribution(0.5)(rng)) std::swap(x, y);
    datastore::NewTask t;
    t.prompt_id = group[x].prompt_id;
    t.response_a = group[x].response_id;
    t.response_b = group[y].response_id;
    t.source = best_scored(group) >= 0 ? "reward_model" : "random";
    t.round = *round;
    tasks.push_back(t);
  }
  sum.prompts = static_cast<int64_t>(tasks.size());
  // Exactly round(agreement * n) tasks, drawn at random, want a second judgement.
  std::vector<size_t> order(tasks.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::shuffle(order.begin(), order.end(), rng);
  const auto doubly = static_cast<size_t>(std::llround(sel.agreement * tasks.size()));
  for (size_t k = 0; k < doubly; ++k) tasks[order[k]].wanted = 2;
  for (const auto& t : tasks) {
    if (!ann.add_task(t).second) continue;
    ++sum.added;
    if (t.wanted == 2) ++sum.doubly;
  }
  tx.commit();
  return sum;
}

}  // namespace posttrain::annotate
