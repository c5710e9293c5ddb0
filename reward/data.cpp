// Reading, filtering and tokenising the reward stage's rankings (see data.h).
#include "reward/data.h"

#include <algorithm>
#include <set>

#include "core/tokenizer/chat_template.h"
#include "datastore/strength.h"

namespace posttrain::reward {

nlohmann::json SourceCounts::to_json() const {
  return {{"source", name},
          {"weight", weight},
          {"read", read},
          {"filtered_strength", filtered_strength},
          {"near_duplicate_pairs", near_duplicate_pairs},
          {"dropped_no_pairs", dropped_no_pairs},
          {"truncated", truncated},
          {"dropped_long", dropped_long},
          {"eval", eval},
          {"train", train},
          {"train_pairs", train_pairs}};
}

bool passes_strength(const std::optional<datastore::Strength>& s,
                     const std::optional<datastore::Strength>& min_strength) {
  return !s || !min_strength || static_cast<int>(*s) >= static_cast<int>(*min_strength);
}

std::optional<datastore::Strength> store_strength(
    const std::optional<core::PreferenceStrength>& s) {
  if (!s) return std::nullopt;
  return datastore::parse_strength(core::preference_strength_name(*s));
}

namespace {

// The text a response is compared on: its raw text, or its messages as "role: content" lines.
std::string response_text(const core::PreferenceExample& ex, size_t k) {
  if (ex.is_text) return ex.response_texts[k];
  std::string out;
  for (const auto& m : ex.responses[k]) {
    if (!out.empty()) out += '\n';
    out += m.role + ": " + m.content;
  }
  return out;
}

// Token ids of prompt + response k, as SFT renders a prompt/completion pair.
std::vector<int64_t> full_sequence(const core::Tokenizer& tok, const core::PreferenceExample& ex,
                                   size_t k, const TokenizeOptions& o) {
  if (ex.is_text) {
    const auto eos = tok.eos_ids();
    if (eos.empty()) throw UsageError("text rankings need a tokenizer with an end-of-sequence token");
    std::vector<int64_t> ids = tok.encode(ex.prompt_text, true);
    auto tail = tok.encode(ex.response_texts[k], false);
    ids.insert(ids.end(), tail.begin(), tail.end());
    ids.push_back(eos.front());
    return ids;
  }
  std::vector<core::ChatMessage> msgs = ex.prompt;
  msgs.insert(msgs.end(), ex.responses[k].begin(), ex.responses[k].end());
  try {
    return core::render_chat(tok, msgs, o.format).ids;
  } catch (const InputError&) {
    throw;
  } catch (const Error& e) {
    Location at = ex.where;
    at.field = "responses[" + std::to_string(k) + "]";
    throw InputError(at, e.what());
  }
}

}  // namespace

std::vector<std::pair<int, int>> distinct_pairs(const Ranking& r,
                                                const core::NearDuplicateOptions& rule,
                                                int64_t* dropped) {
  const auto n = static_cast<int>(r.example.num_responses());
  std::vector<std::pair<int, int>> all = r.pairs;
  if (all.empty()) {
    for (int i = 0; i < n; ++i)
      for (int j = i + 1; j < n; ++j) all.emplace_back(i, j);
  }
  std::vector<std::string> text;
  for (int k = 0; k < n; ++k) text.push_back(response_text(r.example, static_cast<size_t>(k)));
  std::vector<std::pair<int, int>> kept;
  for (const auto& [b, w] : all) {
    if (core::near_duplicate(text[b], text[w], rule)) {
      ++*dropped;
    } else {
      kept.emplace_back(b, w);
    }
  }
  return kept;
}

std::optional<RankedTokens> tokenize_ranking(const core::Tokenizer& tok, const Ranking& r,
                                             const std::vector<std::pair<int, int>>& pairs,
                                             const TokenizeOptions& o, bool* truncated) {
  *truncated = false;
  if (pairs.empty()) return std::nullopt;
  // Only the responses some pair names, in their ranking order.
  std::vector<int> used;
  for (const auto& [b, w] : pairs) used.insert(used.end(), {b, w});
  std::sort(used.begin(), used.end());
  used.erase(std::unique(used.begin(), used.end()), used.end());
  std::vector<std::vector<int64_t>> full;
  for (int k : used) {
    auto ids = full_sequence(tok, r.example, static_cast<size_t>(k), o);
    if (static_cast<int64_t>(ids.size()) > o.max_seq_len) {
      if (o.overlong == core::OverlongPolicy::kDrop) return std::nullopt;
      ids.resize(static_cast<size_t>(o.max_seq_len));
      *truncated = true;
    }
    full.push_back(std::move(ids));
  }
  // Longest common prefix, leaving every response at least its last token.
  size_t p = full[0].size();
  for (const auto& f : full) {
    size_t i = 0;
    while (i < p && i < f.size() && f[i] == full[0][i]) ++i;
    p = std::min(p, i);
  }
  for (const auto& f : full) p = std::min(p, f.size() - 1);
  RankedTokens out;
  out.prompt.assign(full[0].begin(), full[0].begin() + static_cast<std::ptrdiff_t>(p));
  for (const auto& f : full) {
    out.responses.emplace_back(f.begin() + static_cast<std::ptrdiff_t>(p), f.end());
  }
  auto slot = [&](int k) {
    return static_cast<int>(std::lower_bound(used.begin(), used.end(), k) - used.begin());
  };
  const auto strength = store_strength(r.example.strength);
  const bool edit = r.example.edited;
  for (const auto& [b, w] : pairs) {
    const int sb = slot(b), sw = slot(w);
    // Sequences equal after rendering or truncation carry no preference.
    if (full[sb] == full[sw]) continue;
    out.pairs.push_back(RankPair{
        sb, sw,
        static_cast<float>(
            datastore::ranking_pair_margin(strength, edit && b == 0, edit && w == 1))});
  }
  if (out.pairs.empty()) return std::nullopt;
  return out;
}

std::vector<Ranking> read_store_rankings(const std::string& path, const std::vector<int>& rounds,
                                         std::optional<datastore::Strength> min_strength,
                                         const core::PreferenceReadOptions& read) {
  datastore::Store::Options opts;
  opts.read_only = true;
  auto store = datastore::Store::open(path, opts);
  datastore::PairFilter f;
  f.rounds = rounds;
  f.min_strength = min_strength;
  std::vector<Ranking> out;
  std::set<std::pair<int64_t, int64_t>> seen;  // (better, worse) response ids
  store.for_each_pair(f, [&](const datastore::Pair& p) {
    // The stored pair in TRL form, parsed by core's reader (errors name the store and pair).
    nlohmann::json row = {{"prompt", p.prompt}, {"chosen", p.chosen}, {"rejected", p.rejected}};
    std::vector<int64_t> ids;
    if (p.edited_id) {
      row["edited"] = p.edited;
      ids.push_back(*p.edited_id);
    }
    if (p.strength) row["strength"] = datastore::strength_name(*p.strength);
    row["source"] = p.source;
    row["round"] = p.round;
    ids.push_back(p.chosen_id);
    ids.push_back(p.rejected_id);
    Ranking r;
    r.example = core::parse_preference_example(
        row, Location{path, 0, "pair " + std::to_string(p.id)}, read);
    // An edit equal to chosen is no edit (the reader drops it).
    if (!r.example.edited && p.edited_id) ids.erase(ids.begin());
    for (int i = 0; i < static_cast<int>(ids.size()); ++i) {
      for (int j = i + 1; j < static_cast<int>(ids.size()); ++j) {
        if (ids[i] != ids[j] && seen.insert({ids[i], ids[j]}).second) r.pairs.emplace_back(i, j);
      }
    }
    if (!r.pairs.empty()) out.push_back(std::move(r));
  });
  return out;
}

}  // namespace posttrain::reward
