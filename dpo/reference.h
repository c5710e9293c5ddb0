// Scoring pairs without a graph (the reference before training, `posttrain dpo eval`) through
// core/scoring.h, the code `posttrain logprobs` uses (shared-prefix rows: equal to separate
// rows to 1e-5), and the
// reference log-probs of a run: cache hits first, then one pass per batch of missing pairs with
// the reference loaded only for that and freed before training starts.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "core/model/llama.h"
#include "dpo/pair_tokens.h"
#include "dpo/ref_cache.h"

namespace posttrain::core {
class DataParallel;
}

namespace posttrain::dpo {

// Log-prob sums of each pair (chosen, rejected over their masks), `batch_size` pairs per
// forward (one pair per row). *forwards is increased by the forward passes when non-null.
std::vector<RefValues> score_pairs(core::LlamaModelImpl& model,
                                   const std::vector<const TokenizedPair*>& pairs,
                                   int64_t batch_size, int64_t logprob_chunk,
                                   int64_t* forwards = nullptr);

// Checks that `reference_dir` can serve as the reference of a policy with `policy` config: a
// causal LM with the same vocabulary and architecture family, and (when both folders have one)
// the same tokenizer. Throws UsageError naming the folder and what differs.
void check_reference(const std::string& reference_dir, const core::LlamaConfig& policy,
                     const std::string& policy_tokenizer_fingerprint);

struct ReferenceStats {
  int64_t pairs = 0, cached = 0, computed = 0, forwards = 0;
};

// Reference values of every pair (same order). Misses are scored by the reference at
// `reference_dir` on `device` in float32, split over the data-parallel ranks (dp may be null),
// and written to the cache by rank 0.
std::vector<RefValues> reference_logprobs(const std::vector<const TokenizedPair*>& pairs,
                                          RefCache& cache, const std::string& reference_dir,
                                          at::Device device, int64_t batch_size,
                                          int64_t logprob_chunk,
                                          const std::shared_ptr<core::DataParallel>& dp,
                                          ReferenceStats* stats);

}  // namespace posttrain::dpo
