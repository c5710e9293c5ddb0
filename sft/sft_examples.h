// SFT examples read from JSONL, one object per line, in any of these shapes:
//   {"messages": [{"role", "content", "weight"?: 0|1}, ...]}   (chat; weight marks what trains)
//   {"prompt": P, "completion": C}   P, C strings or message lists
//   a `posttrain synth ... --candidates F --output O` line: {"kept": true, "messages": [...],
//   "prompt", "attempts", ...} trains on its messages (failed attempts carry weight 0), and
//   {"kept": false, ...} (its checks failed, or a filter dropped it) is skipped and counted.
// A prompt/completion pair with string fields becomes a user turn + an assistant turn (chat), or
// with as_text, raw text: the prompt's tokens then the completion's plus an end-of-sequence
// token, training on the completion. Errors name the file, line and field.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/error.h"
#include "core/data/examples.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"

namespace posttrain::sft {

using core::ChatFormat;
using core::ChatMessage;
using core::TokenizedExample;
using core::Tokenizer;

struct SftExample {
  std::vector<ChatMessage> messages;  // chat form (used when !is_text)
  bool is_text = false;               // raw prompt/completion text
  std::string prompt, completion;     // text form
  bool not_kept = false;              // a synth line with "kept": false: nothing to train on
  Location where;                     // file and line it came from
};

// Token ids and the per-token training mask (1 = the loss covers this token) of one example.
struct SftTokens {
  std::vector<int64_t> ids;
  std::vector<uint8_t> target_mask;
};

// Parses one JSONL object. prompt_completion_as_text: string prompt/completion pairs are raw
// text rather than a user + assistant turn.
SftExample parse_sft_example(const nlohmann::json& row, const Location& where,
                             bool prompt_completion_as_text);
// Reads every line of `path`. Throws IoError/InputError.
std::vector<SftExample> read_sft_examples(const std::string& path, bool prompt_completion_as_text);

// Chat examples are rendered in `format` with the loss on weighted assistant content plus each
// such turn's end token (RenderedChat::sft_target_mask); text examples train on the completion
// and the tokenizer's first end-of-sequence token. `posttrain tokenize` shows exactly this.
// A not_kept example is an InputError at its line (callers skip those).
SftTokens render_sft_example(const Tokenizer& tok, ChatFormat format, const SftExample& example);
// The same as next-token targets (core::make_targets), what SFT trains on.
TokenizedExample tokenize_sft_example(const Tokenizer& tok, ChatFormat format,
                                      const SftExample& example);

}  // namespace posttrain::sft
