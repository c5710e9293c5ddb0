#include "core/data/mixture.h"

#include <cmath>
#include <random>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace posttrain::core {

OverlongPolicy parse_overlong_policy(const std::string& name) {
  if (name == "truncate") return OverlongPolicy::kTruncate;
  if (name == "drop") return OverlongPolicy::kDrop;
  throw UsageError("unknown overlong policy '" + name + "' (truncate|drop)");
}

nlohmann::json SourceStats::to_json() const {
  return {{"source", name},          {"weight", weight},
          {"read", read},            {"truncated", truncated},
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
  ex->targets.back() = -100;  // its target token was cut away
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

Mixture build_mixture(std::vector<TokenizedSource> sources, const MixtureOptions& o) {
  Mixture mix;
  for (size_t s = 0; s < sources.size(); ++s) {
    TokenizedSource& src = sources[s];
    SourceStats st;
    st.name = src.name;
    st.weight = src.weight;
    st.read = static_cast<int64_t>(src.examples.size());
    std::vector<TokenizedExample> kept;
    for (auto& ex : src.examples) {
      bool truncated = false;
      if (!apply_length_limit(&ex, o.max_seq_len, o.overlong, &truncated)) {
        ++st.dropped_long;
        continue;
      }
      st.truncated += truncated;
      if (ex.num_targets() == 0) {
        ++st.dropped_no_targets;
        continue;
      }
      kept.push_back(std::move(ex));
    }
    const uint64_t seed = o.seed * 1000003ULL + s * 7919ULL + 17;
    const int64_t n = static_cast<int64_t>(kept.size());
    std::vector<int64_t> order = seeded_permutation(n, seed);
    int64_t n_eval = src.eval_only ? n : static_cast<int64_t>(std::llround(o.eval_fraction * n));
    if (!src.eval_only && o.eval_fraction > 0 && n_eval == 0 && n > 1) n_eval = 1;
    std::vector<bool> is_eval(n, false);
    for (int64_t i = 0; i < n_eval; ++i) is_eval[order[i]] = true;
    std::vector<int64_t> train_idx;
    for (int64_t i = 0; i < n; ++i) {  // file order inside each part
      if (is_eval[i]) {
        mix.eval.push_back(kept[i]);
      } else {
        train_idx.push_back(i);
      }
    }
    st.eval = n_eval;
    if (!src.eval_only) {
      const double whole = std::floor(src.weight);
      for (int64_t c = 0; c < static_cast<int64_t>(whole); ++c) {
        for (int64_t i : train_idx) mix.train.push_back(kept[i]);
      }
      const int64_t extra =
          static_cast<int64_t>(std::llround((src.weight - whole) * train_idx.size()));
      std::vector<int64_t> pick = seeded_permutation(train_idx.size(), seed + 1);
      for (int64_t i = 0; i < extra; ++i) mix.train.push_back(kept[train_idx[pick[i]]]);
      st.train = static_cast<int64_t>(whole) * static_cast<int64_t>(train_idx.size()) + extra;
    }
    mix.sources.push_back(st);
  }
  return mix;
}

}  // namespace posttrain::core
