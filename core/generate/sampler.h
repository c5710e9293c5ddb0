// Token selection from one row of next-token logits, on the CPU in float32/float64, one row at
// a time, so what a sequence draws never depends on which other rows share the batch. Random
// draws come from a counter-based stream: the u of step t of a sample is a hash of (sample
// seed, t), so a seed reproduces its tokens in any batch, any order, any chunking.
// Truncation (top-k, top-p, min-p) selects by thresholds over the values, without a sort: tokens
// tied with the threshold value are all kept (as transformers' top-k does).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "core/generate/sampling_params.h"

namespace posttrain::core::generate {

// Uniform double in [0, 1) for step `step` of the stream `seed` (53 random bits).
double uniform_draw(uint64_t seed, int64_t step);

// The seed of sample k of a request seeded with `seed` (distinct streams per sample).
uint64_t sample_seed(uint64_t seed, int64_t k);

// The distribution a non-greedy draw picks from: kept token ids in increasing id order and
// their probabilities (renormalised over the kept set, summing to 1).
struct TruncatedDistribution {
  std::vector<int64_t> ids;
  std::vector<double> probs;
};

// logits: V floats. Applies temperature (> 0), top-k, top-p, min-p. At least one token is
// always kept (the most likely).
TruncatedDistribution truncated_distribution(const float* logits, int64_t V,
                                             const SamplingParams& p);

struct SampledToken {
  int64_t id = 0;
  // log softmax(logits)[id] at temperature 1 without truncation: the model's own log-prob of
  // the token, what `posttrain logprobs` gives for it.
  double logprob = 0;
};

// Greedy (temperature 0: the first maximal id) or a draw by inverse CDF with uniform u over
// truncated_distribution in id order.
SampledToken sample_token(const float* logits, int64_t V, const SamplingParams& p, double u);

// log softmax(logits)[id] (temperature 1), accumulated in double.
double token_logprob(const float* logits, int64_t V, int64_t id);

// One draw from a row of a logits batch.
struct Draw {
  int64_t row = 0;
  const SamplingParams* params = nullptr;
  double u = 0;
};
// sample_token for every draw, rows of logits [M, V] float32 CPU contiguous, draws in parallel
// (each draw's result depends only on its row, settings and u).
std::vector<SampledToken> sample_rows(const at::Tensor& logits, const std::vector<Draw>& draws);

}  // namespace posttrain::core::generate
