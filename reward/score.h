// `posttrain reward score`: the reward of every JSONL row under a reward model, optionally
// recorded in (and reused from) the store's scores table.
//
// A row gives `input_ids` (taken as given: no BOS, template or EOS added), `text` (tokenised as
// `posttrain logprobs` does: BOS as the tokenizer's post-processor says), `messages` (the chat
// template), `prompt` + `completion` (rendered as SFT renders a pair; `response` is accepted for
// `completion`, as `verify` does), or, with a store, `response_id`. Each output line is the input
// line plus "reward" (plus "response_id" with a store). Rows are scored in right-padded batches
// with an attention mask; the reward is read at each row's last real token, as transformers'
// LlamaForSequenceClassification does, so batching never changes a reward.
//
// With a store: rows with prompt + completion (added to the store when new) or a response_id are
// scored per (response, reward-model checkpoint); a score already stored for the pair is reused,
// not recomputed. Every row is read and checked before anything is computed or written, and the
// store's writes are one transaction: bad input leaves the store as it was.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "core/tokenizer/tokenizer.h"

namespace posttrain::reward {

struct ScoreOptions {
  std::string model_dir;
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
  int64_t batch_size = 8;
  std::optional<core::ChatFormat> format;  // default: the tokenizer's
  bool prompt_completion_as_text = false;  // string prompt/completion as raw text (+ EOS)
  std::string store;                       // "" = none
};

struct ScoreSummary {
  int64_t rows = 0;
  int64_t computed = 0;  // rewards computed by the model
  int64_t reused = 0;    // taken from the store
  int64_t stored = 0;    // new scores written to the store
};

// Scores every row of `input` into `output` (JSONL). Throws InputError naming the file, line
// and field of a bad row before anything is written.
ScoreSummary score_file(const std::string& input, const std::string& output,
                        const ScoreOptions& options);

// The scorer name under which a reward model's scores are stored: its absolute path.
std::string scorer_key(const std::string& model_dir);

}  // namespace posttrain::reward
