// Coarse-grained CPU parallelism for the trainer: one parallel region over a few large work
// items instead of ATen splitting every small op over its threads. At the trainer's sizes on a
// small CPU, each op's fork/join costs about as much as its work, and far more when the cores are
// shared with other processes (a team waits for its slowest, descheduled, thread), so the
// trainer hands each thread a whole item (a slice of a micro-batch, a run of parameters) and
// every op inside runs single-threaded (ATen and MKL see that they are inside a parallel region).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

namespace posttrain::core {

// Threads a coarse region may use here: ATen's intra-op thread count, or 1 when already inside a
// parallel region, or when this build cannot open one (see cpu_parallel.cpp).
int64_t coarse_threads();

// Splits items 0..n-1 with the given weights (n = weights.size()) into at most `parts`
// contiguous, non-empty runs of roughly equal total weight: the k-th boundary is the one whose
// prefix weight is nearest k/parts of the total (the later one on a tie). Returns the run
// boundaries: first 0, last n.
inline std::vector<int64_t> balanced_runs(const std::vector<int64_t>& weights, int64_t parts) {
  const int64_t n = static_cast<int64_t>(weights.size());
  std::vector<int64_t> prefix(n + 1, 0);
  for (int64_t i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + weights[i];
  const int64_t total = prefix[n];
  std::vector<int64_t> bounds{0};
  int64_t i = 1;  // the first prefix index at or past the current target
  for (int64_t k = 1; k < parts; ++k) {
    const int64_t target = total * k;  // compared with prefix * parts
    while (i < n && prefix[i] * parts < target) ++i;
    // The nearer of i and i - 1, kept inside (bounds.back(), n).
    int64_t cut = i;
    if (cut >= n || (cut - 1 > bounds.back() &&
                     target - prefix[cut - 1] * parts < prefix[cut] * parts - target)) {
      --cut;
    }
    if (cut <= bounds.back() || cut >= n) continue;
    bounds.push_back(cut);
    i = cut + 1;
  }
  if (n > 0) bounds.push_back(n);
  return bounds;
}

// Runs fn(begin, end) for each run of `bounds` (balanced_runs) in one parallel region, one run
// per thread, with the caller's thread-local state (grad mode, autocast, profiler) in every
// thread. Ops inside run single-threaded. An exception is rethrown in the caller.
void for_each_run(const std::vector<int64_t>& bounds,
                  const std::function<void(int64_t begin, int64_t end)>& fn);

}  // namespace posttrain::core
