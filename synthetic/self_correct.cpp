// The correction loop and its statistics.
#include "synthetic/self_correct.h"

namespace posttrain::synthetic {

std::string feedback_turn(const std::string& feedback) {
  return "Your previous answer was checked and it is not correct.\n\n" + feedback +
         "\n\nPlease correct it and give the full answer again.";
}

nlohmann::json next_dialogue(const Correction& c) {
  nlohmann::json messages = c.messages;
  if (!c.attempts.empty()) {
    messages.push_back({{"role", "user"}, {"content", feedback_turn(c.attempts.back().feedback)}});
  }
  return messages;
}

void add_attempt(Correction* c, const nlohmann::json& attempt, AttemptOutcome out) {
  if (!c->attempts.empty()) c->messages = next_dialogue(*c);
  if (out.candidate.empty()) {
    out.candidate = attempt.is_string() ? attempt.get<std::string>() : attempt.dump();
  }
  nlohmann::json msgs = out.messages;
  if (msgs.empty()) msgs.push_back({{"role", "assistant"}, {"content", out.candidate}});
  for (auto m : msgs) {
    if (m.value("role", "") == "assistant") m["weight"] = out.passed ? 1 : 0;
    c->messages.push_back(std::move(m));
  }
  c->attempts.push_back(std::move(out));
  c->kept = c->attempts.back().passed;
  c->first_try = c->kept && c->attempts.size() == 1;
  c->fixed_by_feedback = c->kept && c->attempts.size() > 1;
}

Correction self_correct(const nlohmann::json& head, const nlohmann::json& attempts,
                        int max_attempts, const AttemptChecker& check) {
  Correction c;
  c.messages = head.is_array() ? head : nlohmann::json::array();
  if (!attempts.is_array()) return c;
  int n = std::min<int>(max_attempts, static_cast<int>(attempts.size()));
  for (int i = 0; i < n; ++i) {
    add_attempt(&c, attempts[i], check(attempts[i]));
    if (c.attempts.back().passed) break;
  }
  return c;
}

void CorrectionStats::add(const Correction& c) {
  if (c.attempts.empty()) return;
  ++problems;
  if (c.first_try)
    ++first_try;
  else if (c.fixed_by_feedback)
    ++fixed;
  else
    ++failed;
  if (c.kept) {
    size_t k = c.attempts.size() - 1;
    if (passes_at.size() <= k) passes_at.resize(k + 1, 0);
    ++passes_at[k];
  }
}

nlohmann::json CorrectionStats::to_json() const {
  auto share = [&](int64_t x) { return problems ? static_cast<double>(x) / problems : 0.0; };
  int64_t wrong_first = problems - first_try;
  return {
      {"problems_with_candidates", problems},
      {"correct_first_try", first_try},
      {"fixed_by_feedback", fixed},
      {"never_correct", failed},
      {"share_correct_first_try", share(first_try)},
      {"share_fixed_by_feedback", share(fixed)},
      {"share_of_wrong_first_fixed", wrong_first ? static_cast<double>(fixed) / wrong_first : 0.0},
      {"passes_at_attempt", passes_at}};
}

}  // namespace posttrain::synthetic
