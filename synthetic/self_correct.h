// Self-correction with execution feedback: the first candidate is checked; when it fails, the
// checker's feedback becomes a new user turn and the next candidate is checked, up to N
// attempts. The dialogue is kept only when its last attempt passes; every assistant message of
// a failed attempt carries "weight": 0 so SFT never trains on it (the passing one has weight 1).
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace posttrain::synthetic {

struct AttemptOutcome {
  bool passed = false;
  std::string verdict;     // pass | fail | error | timeout | limit
  std::string feedback;    // checker's message ("" when passed)
  nlohmann::json details;  // checker-specific (failed tests, wrong steps, tool calls)
  // This attempt's messages: one assistant message, or for tool use the assistant calls with the
  // ipython results between them. Empty: the checker leaves it to self_correct (one message).
  nlohmann::json messages = nlohmann::json::array();
  std::string candidate;  // the attempt as given (text; a list is dumped as JSON)
  // Model-generated attempts only (null otherwise): the messages it answered and how it was
  // sampled ({"seed", "tokens", "finish_reason"}), recorded beside the verdict.
  nlohmann::json prompt;
  nlohmann::json generation;
};

// Checks one attempt (a string, or for tool use possibly a list of strings).
using AttemptChecker = std::function<AttemptOutcome(const nlohmann::json& attempt)>;

struct Correction {
  std::vector<AttemptOutcome> attempts;  // those checked, in order
  nlohmann::json messages;               // head + attempts + feedback turns, with weights
  bool kept = false;                     // last checked attempt passed
  bool first_try = false;                // attempt 1 passed
  bool fixed_by_feedback = false;        // attempt 1 failed, a later one passed
};

// The user turn that carries `feedback` back to the model.
std::string feedback_turn(const std::string& feedback);

// The messages the next attempt answers: the dialogue so far, and after a failed attempt the
// feedback turn carrying the checker's feedback (what the model sees when it corrects itself).
nlohmann::json next_dialogue(const Correction& c);

// Appends a checked attempt to `c` (after a failed one, first the feedback turn; its assistant
// messages weighted 1 when it passed, else 0) and updates kept / first_try /
// fixed_by_feedback. `attempt` is what was checked (fills out.candidate when empty).
void add_attempt(Correction* c, const nlohmann::json& attempt, AttemptOutcome out);

// head: the opening messages (system, user prompt). attempts: candidates in order; at most
// max_attempts are checked, stopping at the first pass.
Correction self_correct(const nlohmann::json& head, const nlohmann::json& attempts,
                        int max_attempts, const AttemptChecker& check);

struct CorrectionStats {
  int64_t problems = 0;            // problems with at least one candidate
  int64_t first_try = 0;           // correct at the first attempt
  int64_t fixed = 0;               // wrong first, fixed by feedback
  int64_t failed = 0;              // never correct within the attempts
  std::vector<int64_t> passes_at;  // passes_at[k]: problems whose attempt k+1 passed

  void add(const Correction& c);
  nlohmann::json to_json() const;  // counts and shares
};

}  // namespace posttrain::synthetic
