#include "core/generate/sampler.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace posttrain::core::generate {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The largest tau such that the values >= tau sum to at least `target` (values > 0, their sum
// >= target > 0): a weighted quickselect, expected O(n), ties at tau all counted.
double mass_threshold(std::vector<double> v, double target) {
  size_t lo = 0, hi = v.size();
  double tau = 0;
  while (lo < hi) {
    const double pivot = v[lo + (hi - lo) / 2];
    // [lo, a): > pivot, [a, b): == pivot, [b, hi): < pivot.
    const auto a =
        std::partition(v.begin() + lo, v.begin() + hi, [&](double x) { return x > pivot; });
    const auto b = std::partition(a, v.begin() + hi, [&](double x) { return x == pivot; });
    double above = 0, equal = 0;
    for (auto it = v.begin() + lo; it != a; ++it) above += *it;
    for (auto it = a; it != b; ++it) equal += *it;
    if (above >= target) {
      hi = a - v.begin();
      continue;
    }
    if (above + equal >= target) return pivot;
    target -= above + equal;
    tau = pivot;  // everything >= pivot is in; the answer lies below
    lo = b - v.begin();
  }
  return tau;  // rounding left target unmet: keep everything seen
}

}  // namespace

double uniform_draw(uint64_t seed, int64_t step) {
  const uint64_t x = splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(step));
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

uint64_t sample_seed(uint64_t seed, int64_t k) {
  return splitmix64(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(k) + 1);
}

TruncatedDistribution truncated_distribution(const float* logits, int64_t V,
                                             const SamplingParams& p) {
  // Top-k as a threshold on the raw logits (temperature keeps the order).
  float floor_logit = -std::numeric_limits<float>::infinity();
  if (p.top_k > 0 && p.top_k < V) {
    std::vector<float> copy(logits, logits + V);
    std::nth_element(copy.begin(), copy.begin() + (p.top_k - 1), copy.end(),
                     [](float a, float b) { return a > b; });
    floor_logit = copy[p.top_k - 1];
  }
  int64_t best = 0;
  for (int64_t i = 1; i < V; ++i) best = logits[i] > logits[best] ? i : best;
  const double inv_t = 1.0 / p.temperature;
  const double m = static_cast<double>(logits[best]) * inv_t;
  // e[i] = exp(z_i - max z) over the kept tokens, 0 elsewhere; the most likely has e = 1.
  std::vector<double> e(V, 0.0);
  double total = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (logits[i] < floor_logit || !(logits[i] == logits[i])) continue;
    e[i] = std::exp(static_cast<double>(logits[i]) * inv_t - m);
    total += e[i];
  }
  double keep_from = 0;  // keep e >= keep_from (and e > 0)
  if (p.top_p < 1) {
    std::vector<double> pos;
    pos.reserve(V);
    for (double x : e) {
      if (x > 0) pos.push_back(x);
    }
    keep_from = mass_threshold(std::move(pos), p.top_p * total);
  }
  // Min-p compares with the most likely token's probability, whose e is 1.
  keep_from = std::max(keep_from, p.min_p);
  TruncatedDistribution d;
  double kept = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (e[i] > 0 && (e[i] >= keep_from || i == best)) {
      d.ids.push_back(i);
      d.probs.push_back(e[i]);
      kept += e[i];
    }
  }
  for (double& q : d.probs) q /= kept;
  return d;
}

double token_logprob(const float* logits, int64_t V, int64_t id) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < V; ++i) m = std::max(m, static_cast<double>(logits[i]));
  double s = 0;
  for (int64_t i = 0; i < V; ++i) s += std::exp(static_cast<double>(logits[i]) - m);
  return static_cast<double>(logits[id]) - m - std::log(s);
}

SampledToken sample_token(const float* logits, int64_t V, const SamplingParams& p, double u) {
  SampledToken out;
  if (p.temperature == 0) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; ++i) best = logits[i] > logits[best] ? i : best;
    out.id = best;
  } else {
    const auto d = truncated_distribution(logits, V, p);
    double acc = 0;
    out.id = d.ids.back();  // when rounding leaves u above the last cumulative sum
    for (size_t j = 0; j < d.ids.size(); ++j) {
      acc += d.probs[j];
      if (u < acc) {
        out.id = d.ids[j];
        break;
      }
    }
  }
  out.logprob = token_logprob(logits, V, out.id);
  return out;
}

std::vector<SampledToken> sample_rows(const at::Tensor& logits, const std::vector<Draw>& draws) {
  std::vector<SampledToken> out(draws.size());
  const int64_t V = logits.size(1);
  const float* base = logits.data_ptr<float>();
  const int64_t n = static_cast<int64_t>(draws.size());
  // Parallel only when the rows are big enough to pay for a parallel region (parallel_for runs
  // inline when the range is below the grain).
  const int64_t grain = n * V < (int64_t{1} << 18) ? n + 1 : 1;
  at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      out[i] = sample_token(base + draws[i].row * V, V, *draws[i].params, draws[i].u);
    }
  });
  return out;
}

}  // namespace posttrain::core::generate
