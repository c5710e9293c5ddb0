// retain_freed_memory: a buffer freed and allocated again at the same size is reused from the
// heap, so touching it again takes no new page faults (with glibc's defaults the second
// allocation of a block this size is a fresh mmap and faults in every page again).
#include "common/allocator.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdlib>
#include <cstring>
#include <vector>

namespace posttrain {
namespace {

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// Writes every byte, and keeps the compiler from dropping the buffer as unused.
void fill(char* p, size_t bytes, int value) {
  std::memset(p, value, bytes);
  asm volatile("" : : "r"(p) : "memory");
}

// Allocates, fills and frees (newest first) ten 3 MiB buffers, as a step does with its
// activations; returns the minor page faults that took.
long step_faults() {
  const long before = minor_faults();
  std::vector<char*> buffers;
  for (int i = 0; i < 10; ++i) {
    buffers.push_back(static_cast<char*>(std::malloc(3u << 20)));
    EXPECT_NE(buffers.back(), nullptr);
    fill(buffers.back(), 3u << 20, i + 1);
  }
  for (auto it = buffers.rbegin(); it != buffers.rend(); ++it) std::free(*it);
  return minor_faults() - before;
}

TEST(RetainFreedMemory, LaterStepsTakeNoNewPageFaults) {
#if !defined(__GLIBC__)
  GTEST_SKIP() << "glibc only";
#endif
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables && std::strstr(tunables, "glibc.malloc.")) GTEST_SKIP() << "GLIBC_TUNABLES set";
  retain_freed_memory();
  step_faults();  // the first step grows the heap
  step_faults();
  // 30 MiB is 7,680 pages of 4 KiB. With glibc's defaults the freed 30 MiB at the heap's top is
  // trimmed back to the kernel (its trim threshold follows the largest freed mmap, 6 MiB here)
  // and every step faults it all in again; kept, a step faults in none of it.
  const long faults = step_faults();
  EXPECT_LT(faults, 64) << faults << " minor page faults in a step after the first";
}

}  // namespace
}  // namespace posttrain
