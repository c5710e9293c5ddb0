// See cpu_parallel.h. at::parallel_for is inline OpenMP code: it opens a parallel region only in
// a file compiled with -fopenmp (this one, when LibTorch's libgomp was found; core/CMakeLists.txt),
// else it runs the runs one after another, which is still correct.
#include "core/train/cpu_parallel.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

namespace posttrain::core {

int64_t coarse_threads() {
#ifdef _OPENMP
  return at::in_parallel_region() ? 1 : static_cast<int64_t>(at::get_num_threads());
#else
  return 1;
#endif
}

void for_each_run(const std::vector<int64_t>& bounds,
                  const std::function<void(int64_t begin, int64_t end)>& fn) {
  const int64_t runs = static_cast<int64_t>(bounds.size()) - 1;
  if (runs <= 0) return;
  const at::ThreadLocalState state;
  at::parallel_for(0, runs, 1, [&](int64_t begin, int64_t end) {
    at::ThreadLocalStateGuard guard(state);
    for (int64_t r = begin; r < end; ++r) fn(bounds[r], bounds[r + 1]);
  });
}

}  // namespace posttrain::core
