// Ranking decisions and the per-prompt store transaction (see record.h).
#include "rejection_sampling/record.h"

namespace posttrain::rejection_sampling {

using nlohmann::json;

Decision decide(const RankingRule& rule, const PromptOutcome& outcome) {
  std::vector<size_t> live;
  std::vector<CandidateScores> scores;
  for (size_t i = 0; i < outcome.candidates.size(); ++i) {
    const Candidate& c = outcome.candidates[i];
    if (c.text.empty()) continue;  // the store keeps no empty response
    live.push_back(i);
    CandidateScores s;
    if (c.verdict) s.verified = c.verdict->passed;
    s.reward = c.reward;
    s.logprob = c.logprob;
    s.tokens = c.tokens;
    scores.push_back(s);
  }
  Decision d;
  if (live.empty()) return d;
  for (size_t i : rank_candidates(rule, scores)) d.order.push_back(live[i]);
  const BestWorst bw = best_and_worst(rule, scores);
  const Candidate& best = outcome.candidates[live[bw.best]];
  const bool needs_pass = rule.require_verified && !outcome.prompt->kind.empty();
  if (!needs_pass || (best.verdict && best.verdict->passed)) d.selected = live[bw.best];
  if (bw.strict) d.pair = std::make_pair(live[bw.best], live[bw.worst]);
  return d;
}

std::string done_marker(int64_t prompt_id) { return "sample prompt " + std::to_string(prompt_id); }

namespace {

// A response deduplicated with an earlier identical one keeps one score per scorer.
bool has_score(datastore::Store& store, int64_t response_id, datastore::ScorerKind kind,
               const std::string& scorer) {
  for (const auto& [name, value] : store.scores_of(response_id, kind)) {
    if (name == scorer) return true;
  }
  return false;
}

json response_sampling(const RecordContext& ctx, const Candidate& c) {
  json s = ctx.sampling;
  s["seed"] = c.seed;
  s["sample"] = c.sample;
  s["finish_reason"] = c.finish_reason;
  if (!c.stop.empty()) s["stop_string"] = c.stop;
  s["logprob"] = c.logprob;
  return s;
}

void add_scores(datastore::Store& store, const RecordContext& ctx, const PromptOutcome& o,
                const Candidate& c, int64_t response_id) {
  using datastore::ScorerKind;
  if (c.verdict) {
    const std::string name = verifier_name(o.prompt->kind);
    if (!has_score(store, response_id, ScorerKind::kVerifier, name)) {
      datastore::NewScore s;
      s.response_id = response_id;
      s.kind = ScorerKind::kVerifier;
      s.scorer = name;
      s.value = c.verdict->passed ? 1.0 : 0.0;
      s.details = {{"verdict", c.verdict->verdict},
                   {"feedback", c.verdict->feedback},
                   {"details", c.verdict->details}};
      s.round = ctx.round;
      store.add_score(s);
    }
  }
  if (c.reward && !has_score(store, response_id, ScorerKind::kRewardModel, ctx.reward_scorer)) {
    datastore::NewScore s;
    s.response_id = response_id;
    s.kind = ScorerKind::kRewardModel;
    s.scorer = ctx.reward_scorer;
    s.value = *c.reward;
    s.round = ctx.round;
    store.add_score(s);
  }
}

}  // namespace

Recorded record_prompt(datastore::Store& store, const RecordContext& ctx, const PromptOutcome& o,
                       const Decision& d,
                       const std::function<void(const Recorded&)>& before_commit) {
  auto tx = store.transaction();
  Recorded r;
  std::vector<std::string> tags;
  if (!o.prompt->kind.empty()) tags.push_back(o.prompt->kind);
  r.prompt_id = store.add_prompt(o.prompt->content, "rejection_sampling", tags);
  for (const Candidate& c : o.candidates) {
    if (c.text.empty()) {
      r.response_ids.push_back(0);
      continue;
    }
    datastore::NewResponse nr;
    nr.prompt_id = r.prompt_id;
    nr.content = c.text;
    nr.checkpoint_id = ctx.checkpoint_id;
    nr.round = ctx.round;
    nr.token_count = c.tokens;
    nr.sampling = response_sampling(ctx, c);
    nr.system_prompt = o.system_prompt;
    const int64_t id = store.add_response(nr);
    r.response_ids.push_back(id);
    add_scores(store, ctx, o, c, id);
  }
  if (d.selected) {
    store.add_selection(ctx.round, datastore::SampleKind::kResponse, r.response_ids[*d.selected],
                        "rejection_sampling");
  }
  // Equal texts share one response row (the store deduplicates), and a pair needs two.
  if (d.pair && r.response_ids[d.pair->first] != r.response_ids[d.pair->second]) {
    datastore::NewPair p;
    p.prompt_id = r.prompt_id;
    p.chosen_id = r.response_ids[d.pair->first];
    p.rejected_id = r.response_ids[d.pair->second];
    p.source = "rejection_sampling";
    p.round = ctx.round;
    r.pair_id = store.add_pair(p).first;
  }
  store.mark_stage_done(ctx.run_id, ctx.round, done_marker(r.prompt_id));
  if (before_commit) before_commit(r);
  tx.commit();
  return r;
}

}  // namespace posttrain::rejection_sampling
