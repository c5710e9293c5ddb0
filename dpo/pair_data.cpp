// DPO data: readers, store pairs, mixing (see pair_data.h).
#include "dpo/pair_data.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "common/jsonl.h"
#include "core/data/mixture.h"
#include "core/data/preference.h"
#ifdef POSTTRAIN_DPO_WITH_STORE
#include "datastore/store.h"
#endif

namespace posttrain::dpo {
namespace {

// The pairs (best, other) of one preference example.
void example_pairs(const core::PreferenceExample& ex, const PairTokenization& how,
                   std::vector<TokenizedPair>* out) {
  if (!how.tok) {
    throw UsageError(ex.where.describe() +
                     ": this row needs the model's tokenizer (the model folder has none); "
                     "give prompt_input_ids, chosen_input_ids and rejected_input_ids");
  }
  const core::Tokenizer& tok = *how.tok;
  const int64_t n = ex.num_responses();
  for (int64_t k = 1; k < n; ++k) {
    if (ex.is_text) {
      out->push_back(tokenize_text_pair(tok, ex.prompt_text, ex.response_texts[0],
                                        ex.response_texts[k], how.masks, ex.where));
    } else {
      out->push_back(tokenize_chat_pair(tok, how.format, ex.prompt, ex.responses[0],
                                        ex.responses[k], how.masks, ex.where));
    }
  }
}

}  // namespace

void parse_pair_row(const nlohmann::json& row, const Location& where, const PairTokenization& how,
                    std::vector<TokenizedPair>* out) {
  if (row.contains("prompt_input_ids") || row.contains("chosen_input_ids") ||
      row.contains("rejected_input_ids")) {
    out->push_back(pretokenized_pair(require_int_list(row, "prompt_input_ids", where),
                                     require_int_list(row, "chosen_input_ids", where),
                                     require_int_list(row, "rejected_input_ids", where),
                                     how.vocab_size, how.masks, where));
    return;
  }
  core::PreferenceReadOptions opts;
  opts.strings_as_chat = !how.strings_as_text;
  example_pairs(core::parse_preference_example(row, where, opts), how, out);
}

std::vector<TokenizedPair> read_pair_file(const std::string& path, const PairTokenization& how) {
  JsonlReader reader(path);
  std::vector<TokenizedPair> out;
  nlohmann::json row;
  while (reader.next(&row)) parse_pair_row(row, reader.where(), how, &out);
  return out;
}

std::vector<TokenizedPair> read_store_pairs(const std::string& path, const StorePairOptions& o,
                                            const PairTokenization& how, int64_t* near_dups,
                                            std::vector<int>* rounds_read) {
#ifdef POSTTRAIN_DPO_WITH_STORE
  datastore::Store::Options opts;
  opts.read_only = true;
  auto store = datastore::Store::open(path, opts);
  datastore::PairFilter filter;
  filter.rounds = o.rounds;
  if (filter.rounds.empty()) {
    const auto by_round = store.stats().pairs_by_round;
    if (by_round.empty()) throw UsageError("store " + path + " has no preference pairs");
    filter.rounds = {by_round.rbegin()->first};
  }
  if (o.min_strength != "none") filter.min_strength = datastore::parse_strength(o.min_strength);
  if (rounds_read) *rounds_read = filter.rounds;
  std::vector<TokenizedPair> out;
  core::PreferenceReadOptions ropts;
  ropts.strings_as_chat = !how.strings_as_text;
  store.for_each_pair(filter, [&](const datastore::Pair& p) {
    const Location where{path, 0, "pair " + std::to_string(p.id)};
    if (core::near_duplicate(core::text_of(p.chosen), core::text_of(p.rejected),
                             o.near_duplicates)) {
      ++*near_dups;
      return;
    }
    // The pair in TRL's form; an edit is not used here (the pair is chosen over rejected).
    const nlohmann::json row = {{"prompt", p.prompt}, {"chosen", p.chosen},
                                {"rejected", p.rejected}};
    std::vector<TokenizedPair> one;
    example_pairs(core::parse_preference_example(row, where, ropts), how, &one);
    for (auto& t : one) {
      t.store_id = p.id;
      out.push_back(std::move(t));
    }
  });
  if (out.empty() && *near_dups == 0) {
    throw UsageError("store " + path + " has no pairs in the selected rounds at strength " +
                     o.min_strength + " or above");
  }
  return out;
#else
  throw UsageError("data.store: this build has no datastore");
#endif
}

nlohmann::json PairSourceStats::to_json() const {
  return {{"name", name},           {"weight", weight},
          {"read", read},           {"near_duplicates", near_duplicates},
          {"truncated", truncated}, {"dropped_long", dropped_long},
          {"eval", eval},           {"train", train}};
}

PairMixture mix_pairs(std::vector<PairSource> sources, const TruncationOptions& trunc,
                      double eval_fraction, uint64_t seed0) {
  PairMixture mix;
  for (size_t s = 0; s < sources.size(); ++s) {
    PairSource& src = sources[s];
    PairSourceStats st;
    st.name = src.name;
    st.weight = src.weight;
    st.read = static_cast<int64_t>(src.pairs.size()) + src.near_duplicates;
    st.near_duplicates = src.near_duplicates;
    std::vector<TokenizedPair> kept;
    for (auto& p : src.pairs) {
      const int64_t before = p.row_tokens();
      if (!truncate_pair(&p, trunc)) {
        ++st.dropped_long;
        continue;
      }
      st.truncated += p.row_tokens() != before;
      kept.push_back(std::move(p));
    }
    const uint64_t seed = seed0 * 1000003ULL + s * 7919ULL + 17;
    const int64_t n = static_cast<int64_t>(kept.size());
    const std::vector<int64_t> order = core::seeded_permutation(n, seed);
    int64_t n_eval = src.eval_only ? n : static_cast<int64_t>(std::llround(eval_fraction * n));
    if (!src.eval_only && eval_fraction > 0 && n_eval == 0 && n > 1) n_eval = 1;
    std::vector<bool> is_eval(n, false);
    for (int64_t i = 0; i < n_eval; ++i) is_eval[order[i]] = true;
    std::vector<int64_t> train_idx;
    for (int64_t i = 0; i < n; ++i) {
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
      const auto extra =
          static_cast<int64_t>(std::llround((src.weight - whole) * train_idx.size()));
      const auto pick = core::seeded_permutation(train_idx.size(), seed + 1);
      for (int64_t i = 0; i < extra; ++i) mix.train.push_back(kept[train_idx[pick[i]]]);
      st.train = static_cast<int64_t>(whole) * static_cast<int64_t>(train_idx.size()) + extra;
    }
    mix.sources.push_back(st);
  }
  return mix;
}

}  // namespace posttrain::dpo
