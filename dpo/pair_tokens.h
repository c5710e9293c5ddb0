// A preference pair as tokens: the prompt once, then each response's tokens with two masks:
//   mask      which response tokens count in the DPO log-prob sums (formatting tokens masked:
//             Llama 3 section 4.1.4 drops header and termination tokens of both responses)
//   nll_mask  (chosen only) SFT's targets: weighted assistant content plus the turn's end token,
//             what the rpo NLL term trains on
// Forms: chat messages (rendered with the template; the response is what the template adds
// after the prompt's generation header, TRL's convention), raw text (prompt with BOS, response
// plus the first EOS token, as TRL's standard form), and pre-tokenized ids taken exactly as
// given. Errors name the pair's file and line (or store row) and the field.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"

namespace posttrain::dpo {

struct TokenizedPair {
  std::vector<int64_t> prompt;  // P >= 1 tokens
  std::vector<int64_t> chosen, rejected;
  std::vector<uint8_t> chosen_mask, rejected_mask;  // DPO sums, same lengths as the responses
  std::vector<uint8_t> chosen_nll_mask;             // rpo NLL targets among chosen
  std::optional<int64_t> store_id;  // preference_pairs.id for store pairs
  Location where;

  int64_t chosen_count() const;    // tokens under chosen_mask
  int64_t rejected_count() const;  // tokens under rejected_mask
  int64_t nll_count() const;
  // Tokens of the one-pass row: prompt[0..P-2], then [prompt[P-1], chosen], [prompt[P-1],
  // rejected] = P + |chosen| + |rejected| + 1.
  int64_t row_tokens() const;
  // sha256 over prompt, responses and masks: the pair's key in the file cache.
  std::string content_key() const;
};

struct MaskOptions {
  // Mask the chat template's formatting tokens (headers, separators, end-of-turn) inside the
  // responses of chat pairs.
  bool mask_format_tokens = true;
  // When set: exactly these token ids are masked inside responses of every form (chat, text,
  // pre-tokenized), instead of the template's formatting labels.
  std::optional<std::set<int64_t>> format_ids;
};

// Token ids of `names` (e.g. "<|eot_id|>"); a name that is not one token throws UsageError
// naming `field`.
std::set<int64_t> format_token_ids(const core::Tokenizer& tok,
                                   const std::vector<std::string>& names,
                                   const std::string& field);

// Chat form. prompt: the messages before the responses (non-empty); chosen/rejected: the
// response messages (non-empty). Throws InputError at `where` for an empty side, a response
// with nothing to score, or identical responses.
TokenizedPair tokenize_chat_pair(const core::Tokenizer& tok, core::ChatFormat format,
                                 const std::vector<core::ChatMessage>& prompt,
                                 const std::vector<core::ChatMessage>& chosen,
                                 const std::vector<core::ChatMessage>& rejected,
                                 const MaskOptions& masks, const Location& where);

// Raw text form: prompt encoded with the tokenizer's special tokens (BOS), each response
// encoded without them and followed by the first EOS token.
TokenizedPair tokenize_text_pair(const core::Tokenizer& tok, const std::string& prompt,
                                 const std::string& chosen, const std::string& rejected,
                                 const MaskOptions& masks, const Location& where);

// Pre-tokenized form (prompt_input_ids / chosen_input_ids / rejected_input_ids), checked
// against the vocabulary and otherwise taken exactly as given.
TokenizedPair pretokenized_pair(std::vector<int64_t> prompt, std::vector<int64_t> chosen,
                                std::vector<int64_t> rejected, int64_t vocab_size,
                                const MaskOptions& masks, const Location& where);

// TRL's truncation: a prompt over max_prompt_length keeps its end; then each response keeps at
// most max_length - |prompt| tokens from its start.
struct TruncationOptions {
  int64_t max_length = 1024;        // prompt + one response
  int64_t max_prompt_length = 512;  // <= max_length
  bool drop = false;                // drop overlong pairs instead of truncating them
};
// Applies `options` in place. Returns false when the pair must be dropped: it was overlong and
// drop is set, or truncation left a response with no counted token.
bool truncate_pair(TokenizedPair* pair, const TruncationOptions& options);

}  // namespace posttrain::dpo
