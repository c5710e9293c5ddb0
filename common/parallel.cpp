#include "common/parallel.h"

#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace posttrain {

void parallel_for(int64_t n, int workers, const std::function<void(int64_t, int)>& fn) {
  if (workers < 1) workers = 1;
  if (workers > 1024) workers = 1024;
  if (n <= 0) return;
  if (workers == 1 || n == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i, 0);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr first_error;
  std::mutex error_mutex;
  std::vector<std::thread> threads;
  for (int w = 0; w < workers && w < n; ++w) {
    threads.emplace_back([&, w] {
      for (int64_t i = next++; i < n; i = next++) {
        try {
          fn(i, w);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (!first_error) first_error = std::current_exception();
          next = n;  // stop handing out work
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace posttrain
