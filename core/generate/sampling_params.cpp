#include "core/generate/sampling_params.h"

#include <cmath>

#include "common/error.h"

namespace posttrain::core::generate {

void validate(const SamplingParams& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0) {
    throw UsageError("temperature must be >= 0 (0 = greedy), got " + std::to_string(p.temperature));
  }
  if (p.top_k < 0) throw UsageError("top_k must be >= 0 (0 = off), got " + std::to_string(p.top_k));
  if (!(p.top_p > 0 && p.top_p <= 1)) {
    throw UsageError("top_p must be in (0, 1], got " + std::to_string(p.top_p));
  }
  if (!(p.min_p >= 0 && p.min_p < 1)) {
    throw UsageError("min_p must be in [0, 1), got " + std::to_string(p.min_p));
  }
  if (p.max_new_tokens < 1) {
    throw UsageError("max_new_tokens must be >= 1, got " + std::to_string(p.max_new_tokens));
  }
  for (const auto& s : p.stop_strings) {
    if (s.empty()) throw UsageError("a stop string must not be empty");
  }
}

}  // namespace posttrain::core::generate
