// Mixing weighted sources, the eval split and the length limit, with counts derived by hand.
#include <gtest/gtest.h>

#include <set>

#include "core/data/mixture.h"
#include "core/logprobs.h"

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
    EXPECT_EQ(e.targets.back(), kIgnoreTarget);  // the cut-off token is not a target
  }
  o.overlong = OverlongPolicy::kDrop;
  Mixture d = build_mixture({s}, o);
  EXPECT_EQ(d.sources[0].dropped_long, 3);
  EXPECT_EQ(d.sources[0].truncated, 0);
  EXPECT_EQ(d.train.size(), 1u);
}

// A preference-like example: one id, a prompt and two responses whose lengths add up.
struct ToyPair {
  int64_t id = 0;
  int64_t prompt = 0, chosen = 0, rejected = 0;  // token counts
};

TEST(DataMixture, AnyExampleTypeMixesWithTheStagesLimit) {
  // 10 pairs of 3 + 2 + 2 = 7 tokens; pairs 7..9 are 12 tokens, over a limit of 10. The stage's
  // limit cuts the prompt to what is left, and drops a pair when its responses alone exceed it.
  SourceOf<ToyPair> a{"a", 1.5, {}, false};
  for (int64_t i = 0; i < 10; ++i) a.examples.push_back({i, i >= 7 ? 8 : 3, 2, 2});
  a.examples[9].chosen = 9;  // 8 + 9 + 2: responses alone are 11 tokens
  SourceOf<ToyPair> held{"held", 1.0, {{100, 1, 1, 1}, {101, 1, 1, 1}}, true};
  MixtureOptions o;
  o.seed = 4;
  o.eval_fraction = 0.2;
  auto limit = [](ToyPair* p) {
    LimitResult r;
    const int64_t max_len = 10, responses = p->chosen + p->rejected;
    if (p->prompt + responses <= max_len) return r;
    if (responses >= max_len) {
      r.too_long = true;
      return r;
    }
    p->prompt = max_len - responses;
    r.truncated = true;
    return r;
  };
  MixtureOf<ToyPair> m = build_mixture_of<ToyPair>({a, held}, o, limit);
  ASSERT_EQ(m.sources.size(), 2u);
  const SourceStats& st = m.sources[0];
  EXPECT_EQ(st.read, 10);
  EXPECT_EQ(st.dropped_long, 1);   // pair 9
  EXPECT_EQ(st.truncated, 2);      // pairs 7 and 8
  EXPECT_EQ(st.eval, 2);           // round(0.2 * 9 kept)
  // 7 training pairs at weight 1.5: one copy plus round(0.5 * 7) = 4 more.
  EXPECT_EQ(st.train, 11);
  EXPECT_EQ(m.train.size(), 11u);
  EXPECT_EQ(m.sources[1].eval, 2);
  EXPECT_EQ(m.eval.size(), 4u);    // 2 held out of a + the eval-only source
  std::set<int64_t> train_ids, eval_ids;
  for (const auto& p : m.train) {
    train_ids.insert(p.id);
    EXPECT_LE(p.prompt + p.chosen + p.rejected, 10) << p.id;  // the limit held
    EXPECT_NE(p.id, 9);
  }
  for (const auto& p : m.eval) eval_ids.insert(p.id);
  EXPECT_EQ(train_ids.size(), 7u);
  for (int64_t id : eval_ids) EXPECT_EQ(train_ids.count(id), 0u) << id;  // pairs stay whole
  // The SFT wrapper is this function with the token limit: the same seed gives the same split.
  Mixture tokens = build_mixture({source("a", 1.5, 0, 9)}, o);
  EXPECT_EQ(tokens.sources[0].eval, 2);
  EXPECT_EQ(tokens.sources[0].train, 11);
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
