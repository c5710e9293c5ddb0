#include "core/data/mixture.h"

#include <cmath>
#include <random>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "core/logprobs.h"

namespace posttrain::core {

OverlongPolicy parse_overlong_policy(const std::string& name) {
  if (name == "truncate") return OverlongPolicy::kTruncate;
  if (name == "drop") return OverlongPolicy::kDrop;
  throw UsageError("unknown overlong policy '" + name + "' (truncate|drop)");
}

nlohmann::json SourceStats::to_json() const {
  return {{"source", name},          {"weight", weight},
          {"read", read},            {"skipped_not_kept", skipped_not_kept},
          {"truncated", truncated},
          {"dropped_long", dropped_long}, {"dropped_no_targets", dropped_no_targets},
          {"eval", eval},            {"train", train}};
}

bool apply_length_limit(TokenizedExample* ex, int64_t max_len, OverlongPolicy policy,
                        bool* truncated) {
  *truncated = false;
  if (static_cast<int64_t>(ex->ids.size()) <= max_len) return true;
  if (policy == OverlongPolicy::kDrop) return false;
  ex->ids.resize(max_len);
  ex->targets.resize(max_len);
  ex->targets.back() = kIgnoreTarget;  // its target token was cut away
  *truncated = true;
  return true;
}

std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(n);
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  std::mt19937_64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    // Modulo draw: a tiny bias is harmless here and keeps the order platform-independent.
    int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(p[i], p[j]);
  }
  return p;
}

SourceSplit split_source(const std::vector<LimitResult>& limits, double weight, bool eval_only,
                         size_t s, const MixtureOptions& o, SourceStats* st) {
  st->read = static_cast<int64_t>(limits.size());
  std::vector<int64_t> kept;  // indices of the examples that survived the limit
  for (size_t i = 0; i < limits.size(); ++i) {
    const LimitResult& r = limits[i];
    st->truncated += r.truncated;
    st->dropped_long += r.too_long;
    st->dropped_no_targets += !r.too_long && r.no_targets;
    if (!r.too_long && !r.no_targets) kept.push_back(static_cast<int64_t>(i));
  }
  const uint64_t seed = o.seed * 1000003ULL + s * 7919ULL + 17;
  const int64_t n = static_cast<int64_t>(kept.size());
  std::vector<int64_t> order = seeded_permutation(n, seed);
  int64_t n_eval = eval_only ? n : static_cast<int64_t>(std::llround(o.eval_fraction * n));
  if (!eval_only && o.eval_fraction > 0 && n_eval == 0 && n > 1) n_eval = 1;
  std::vector<bool> is_eval(n, false);
  for (int64_t i = 0; i < n_eval; ++i) is_eval[order[i]] = true;
  SourceSplit split;
  std::vector<int64_t> train_idx;
  for (int64_t i = 0; i < n; ++i) {  // file order inside each part
    (is_eval[i] ? split.eval : train_idx).push_back(kept[i]);
  }
  st->eval = n_eval;
  if (!eval_only) {
    const double whole = std::floor(weight);
    for (int64_t c = 0; c < static_cast<int64_t>(whole); ++c) {
      split.train.insert(split.train.end(), train_idx.begin(), train_idx.end());
    }
    const int64_t extra = static_cast<int64_t>(std::llround((weight - whole) * train_idx.size()));
    std::vector<int64_t> pick = seeded_permutation(train_idx.size(), seed + 1);
    for (int64_t i = 0; i < extra; ++i) split.train.push_back(train_idx[pick[i]]);
    st->train = static_cast<int64_t>(split.train.size());
  }
  return split;
}

Mixture build_mixture(std::vector<TokenizedSource> sources, const MixtureOptions& o) {
  return build_mixture_of<TokenizedExample>(
      std::move(sources), o, [&o](TokenizedExample* ex) {
        LimitResult r;
        r.too_long = !apply_length_limit(ex, o.max_seq_len, o.overlong, &r.truncated);
        r.no_targets = !r.too_long && ex->num_targets() == 0;
        return r;
      });
}

}  // namespace posttrain::core
