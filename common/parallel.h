// Work spread over a few plain threads (sandboxed runs, synthetic candidates): not for tensor
// code, which uses ATen's pool (core/train/cpu_parallel.h).
#pragma once

#include <cstdint>
#include <functional>

namespace posttrain {

// Calls fn(i, worker) for i in [0, n) on up to `workers` threads (clamped to [1, 1024]), each
// index once; worker is the thread's number in [0, workers). The first exception thrown stops
// handing out indices and is rethrown once all threads have joined.
void parallel_for(int64_t n, int workers, const std::function<void(int64_t i, int worker)>& fn);

}  // namespace posttrain
