// Mixing weighted sources, the eval split and the length limit, with counts derived by hand.
#include <gtest/gtest.h>

#include <set>

#include "core/data/mixture.h"

namespace posttrain::core {
namespace {

// Example i of a source: ids {base + i, ...} of `len` tokens, training on all but the first.
TokenizedExample ex(int64_t id, int64_t len) {
  std::vector<int64_t> ids(len, id);
  std::vector<uint8_t> mask(len, 1);
  mask[0] = 0;
  return make_targets(ids, mask);
}

TokenizedSource source(const std::string& name, double w, int64_t base, int64_t n,
                       int64_t len = 4) {
  TokenizedSource s{name, w, {}, false};
  for (int64_t i = 0; i < n; ++i) s.examples.push_back(ex(base + i, len));
  return s;
}

TEST(DataMixture, WeightsRepeatAndSubsample) {
  MixtureOptions o;
  o.seed = 1;
  Mixture m = build_mixture({source("a", 2.0, 0, 10), source("b", 0.5, 100, 10)}, o);
  ASSERT_EQ(m.sources.size(), 2u);
  EXPECT_EQ(m.sources[0].train, 20);  // 2 copies of 10
  EXPECT_EQ(m.sources[1].train, 5);   // half of 10
  EXPECT_EQ(m.train.size(), 25u);
  std::set<int64_t> from_b;
  for (const auto& e : m.train) {
    if (e.ids[0] >= 100) from_b.insert(e.ids[0]);
  }
  EXPECT_EQ(from_b.size(), 5u);  // five distinct examples of b, none twice
  // Deterministic for a seed.
  Mixture again = build_mixture({source("a", 2.0, 0, 10), source("b", 0.5, 100, 10)}, o);
  for (size_t i = 0; i < m.train.size(); ++i) EXPECT_EQ(m.train[i].ids, again.train[i].ids);
}

TEST(DataMixture, EvalSplitIsDisjointAndCounted) {
  MixtureOptions o;
  o.eval_fraction = 0.2;
  Mixture m = build_mixture({source("a", 1.0, 0, 10)}, o);
  EXPECT_EQ(m.eval.size(), 2u);
  EXPECT_EQ(m.train.size(), 8u);
  EXPECT_EQ(m.sources[0].eval, 2);
  std::set<int64_t> train_ids;
  for (const auto& e : m.train) train_ids.insert(e.ids[0]);
  for (const auto& e : m.eval) EXPECT_EQ(train_ids.count(e.ids[0]), 0u);
  // An eval-only source goes entirely to eval.
  TokenizedSource held = source("held", 1.0, 50, 3);
  held.eval_only = true;
  Mixture m2 = build_mixture({source("a", 1.0, 0, 4), held}, MixtureOptions{});
  EXPECT_EQ(m2.train.size(), 4u);
  EXPECT_EQ(m2.eval.size(), 3u);
}

TEST(DataMixture, LongExamplesTruncatedOrDroppedAndCounted) {
  TokenizedSource s{"s", 1.0, {}, false};
  s.examples = {ex(1, 3), ex(2, 8), ex(3, 6)};
  // A long example whose only trained tokens fall past the limit: nothing left after cutting.
  s.examples.push_back(make_targets({9, 9, 9, 9, 9, 9, 9}, {0, 0, 0, 0, 0, 0, 1}));
  MixtureOptions o;
  o.max_seq_len = 5;
  o.overlong = OverlongPolicy::kTruncate;
  Mixture t = build_mixture({s}, o);
  EXPECT_EQ(t.sources[0].truncated, 3);
  EXPECT_EQ(t.sources[0].dropped_no_targets, 1);
  EXPECT_EQ(t.train.size(), 3u);
  for (const auto& e : t.train) {
    EXPECT_LE(e.ids.size(), 5u);
    EXPECT_EQ(e.targets.back(), -100);  // the cut-off token is not a target
  }
  o.overlong = OverlongPolicy::kDrop;
  Mixture d = build_mixture({s}, o);
  EXPECT_EQ(d.sources[0].dropped_long, 3);
  EXPECT_EQ(d.sources[0].truncated, 0);
  EXPECT_EQ(d.train.size(), 1u);
}

TEST(DataMixture, SeededPermutationIsAPermutation) {
  auto p = seeded_permutation(100, 42);
  std::set<int64_t> seen(p.begin(), p.end());
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_EQ(p, seeded_permutation(100, 42));
  EXPECT_NE(p, seeded_permutation(100, 43));
}

}  // namespace
}  // namespace posttrain::core
