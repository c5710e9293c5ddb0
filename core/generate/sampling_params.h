// What one request asks of the decoder: how to pick each token (greedy, temperature, top-k,
// top-p, min-p, applied in that order as transformers' logits warpers do), when to stop (stop
// token ids, stop strings, a length limit). Seeds are per sample, in GenerationRequest.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace posttrain::core::generate {

struct SamplingParams {
  double temperature = 1.0;      // 0 = greedy (argmax); else logits / temperature
  int64_t top_k = 0;             // keep the k most likely tokens (ties at the k-th kept); 0 = off
  double top_p = 1.0;            // keep the smallest most-likely set with mass >= top_p; (0, 1]
  double min_p = 0.0;            // drop tokens with p < min_p * max p; [0, 1)
  int64_t max_new_tokens = 256;  // >= 1; capped so prompt + output fits the model's context
  // Generation ends after emitting any of these ids (the id is part of the output).
  std::vector<int64_t> stop_token_ids;
  // Generation ends once the decoded output contains one of these (text is cut before it; the
  // tokens up to the one that completed it stay in the output). Needs a detokenizer.
  std::vector<std::string> stop_strings;
};

// Throws UsageError naming the first setting out of range.
void validate(const SamplingParams& p);

}  // namespace posttrain::core::generate
