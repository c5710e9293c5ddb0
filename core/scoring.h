// Scoring without a graph, in one place for every stage and command: per-token log-probs and
// their sums over target tokens under a causal LM, or rewards under a reward model, for
// sequences (right-padded batches) or for prompts with several responses (shared-prefix rows,
// core/data/shared_prefix.h: the prompt is run once per group). Batching and packing never
// change a sequence's numbers. Also the hash that keys cached reference log-probs.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "core/model/llama.h"

namespace posttrain::core {

struct ScoringOptions {
  at::Device device = at::kCPU;  // the model's device
  int64_t batch_size = 8;        // rows per forward pass
  // Shared-prefix groups: pack several into one row up to this many tokens (0 = one group per
  // row). A group longer than this gets a row of its own.
  int64_t max_row_tokens = 0;
  int64_t chunk_tokens = 1024;  // tokens per LM-head chunk (core/logprobs.h)
  // Called after each forward pass with the number of sequences (or groups) done so far.
  std::function<void(int64_t)> progress;
};

// A sequence to score. target_mask: one flag per token, 1 = the token counts toward the sum
// (it is predicted from the tokens before it, so token 0 never counts); empty = every token
// but the first.
struct ScoredSequence {
  std::vector<int64_t> ids;
  std::vector<uint8_t> target_mask;
};

struct SequenceScores {
  // Causal LM: element t = log p(ids[t + 1] | ids[0..t]), ids.size() - 1 values (every token,
  // whatever the mask says). Empty for a reward model.
  std::vector<double> token_logprobs;
  double logprob_sum = 0;   // causal LM: sum over target tokens
  int64_t num_targets = 0;  // causal LM: how many tokens the sum has
  double reward = 0;        // reward model: the score at the last token
};

// Scores `sequences` (each non-empty) in right-padded batches of options.batch_size, under
// InferenceMode. Throws UsageError on an empty sequence or a mask of the wrong length.
std::vector<SequenceScores> score_sequences(LlamaModelImpl& model,
                                            const std::vector<ScoredSequence>& sequences,
                                            const ScoringOptions& options);

// A prompt (>= 1 token) and its responses; response_masks: empty (every response token is a
// target) or one flag per response token.
struct ScoredGroup {
  std::vector<int64_t> prompt;
  std::vector<std::vector<int64_t>> responses;
  std::vector<std::vector<uint8_t>> response_masks;
};

// Per response, the scores of prompt + response as one sequence whose targets are the masked-in
// response tokens, except that token_logprobs holds only the response's tokens: element i =
// log p(response[i] | prompt, response[0..i-1]). The prompt's own log-probs (the same for every
// response) are in prompt_logprobs: P - 1 values.
struct GroupScores {
  std::vector<double> prompt_logprobs;
  std::vector<SequenceScores> responses;
};

// Scores groups as shared-prefix rows (packed per options.max_row_tokens, batch_size rows per
// forward), under InferenceMode. Equal to score_sequences on each prompt + response.
std::vector<GroupScores> score_groups(LlamaModelImpl& model, const std::vector<ScoredGroup>& groups,
                                      const ScoringOptions& options);

// Everything that changes a cached reference log-prob, for Store::put_ref_logprobs'
// settings_hash. Each field is a string the caller fills from its own config; the hash covers
// the field names too, so adding a setting later changes every hash (old cache entries are then
// recomputed, never misread).
struct ReferenceSettings {
  std::string checkpoint;  // checkpoint_fingerprint() of the reference model folder
  std::string tokenizer;   // Tokenizer::fingerprint()
  std::string chat_template;  // "llama3", "chatml", or "text" for raw prompt/response text
  std::string truncation;     // e.g. "max_length=2048,max_prompt_length=1024,keep=start"
  std::string masks;          // which response tokens are targets, e.g. "assistant_content+eot"
  std::string dtype;          // the scoring dtype: "float32" or "bfloat16"
  std::string layout;         // "shared_prefix" or "separate" (equal to 1e-5, not bit for bit)
  std::map<std::string, std::string> extra;  // anything else, by name
};

// Lower-case hex SHA-256 of the settings (each field named).
std::string reference_settings_hash(const ReferenceSettings& settings);

// SHA-256 over a checkpoint folder's config.json and weight files (*.safetensors and their
// index, read in full, names sorted), so a changed weight changes the fingerprint. Throws
// IoError when the folder has no config.json.
std::string checkpoint_fingerprint(const std::string& dir);

}  // namespace posttrain::core
