// Preference examples (DPO, reward models): a prompt and two or more responses ranked best first,
// read from JSONL in TRL's forms, one object per line:
//   {"prompt": P, "chosen": C, "rejected": R}                 explicit prompt
//   {"chosen": C, "rejected": R}                              implicit prompt: the longest common
//        prefix of C and R (messages, or characters as TRL's extract_prompt: a space just before
//        the first difference goes to the responses)
//   {"prompt": P, "responses": [...], "ranking": [i, ...]}    ranking, indices best first; a
//        subset may be ranked (the others are dropped)
// P, C, R and each response are strings or message lists. Optional on every row: "edited" (an
// annotator's edit, ranked above all; equal to the best response = no edit), "strength" (one of
// Llama 3's four labels), "source" (default: the file stem), "round" (integer >= 0).
// Forms: when every field is a string the example is text unless strings_as_chat; otherwise it
// is chat, a string prompt becoming one user message and a string response one assistant
// message (as SFT's prompt/completion). Errors name the file, line and field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/error.h"
#include "core/tokenizer/chat_template.h"

namespace posttrain::core {

// Llama 3's preference strength labels, weakest first.
enum class PreferenceStrength {
  kMarginallyBetter = 0,
  kSlightlyBetter = 1,
  kBetter = 2,
  kSignificantlyBetter = 3,
};
const char* preference_strength_name(PreferenceStrength s);  // "significantly_better", ...
std::optional<PreferenceStrength> parse_preference_strength(const std::string& name);

struct PreferenceExample {
  bool is_text = false;  // raw text (prompt_text, response_texts) rather than chat messages
  // Chat form: the conversation before the responses, and each response's messages (usually one
  // assistant message), best first.
  std::vector<ChatMessage> prompt;
  std::vector<std::vector<ChatMessage>> responses;
  // Text form: the prompt text and the response texts, best first.
  std::string prompt_text;
  std::vector<std::string> response_texts;
  // Best first: [edited,] chosen, rejected for pair rows; a ranking's ranked responses.
  bool edited = false;  // response 0 is an annotator's edit (edited > chosen > rejected)
  std::optional<PreferenceStrength> strength;  // unlabelled when absent
  std::string source;
  int64_t round = -1;  // -1 = not given
  Location where;

  int64_t num_responses() const;
};

struct PreferenceReadOptions {
  bool strings_as_chat = false;  // all-string rows become a user turn + assistant turns
  std::string default_source;    // "" = the file stem
};

// Parses one JSONL object (also a store row in TRL form). `default_source` fills "source".
PreferenceExample parse_preference_example(const nlohmann::json& row, const Location& where,
                                           const PreferenceReadOptions& options);
// Reads every line of `path`. Throws IoError/InputError.
std::vector<PreferenceExample> read_preference_examples(const std::string& path,
                                                        const PreferenceReadOptions& options = {});

}  // namespace posttrain::core
