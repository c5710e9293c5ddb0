// Seeded generator for problem families: SplitMix64, so the same seed gives the same problems
// on every platform and standard library (std::uniform_int_distribution is not portable).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace posttrain::synthetic {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  // A stream for item `index` of a run seeded with `seed` (items do not depend on each other).
  Rng(uint64_t seed, uint64_t index) : state_(seed * 0x9E3779B97F4A7C15ull ^ (index + 1)) {
    next();
  }

  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform integer in [lo, hi] (hi - lo < 2^63; the modulo bias is below 2^-40 here).
  int64_t uniform(int64_t lo, int64_t hi) {
    uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    return lo + static_cast<int64_t>(next() % span);
  }
  template <typename T>
  const T& pick(const std::vector<T>& items) {
    return items[static_cast<size_t>(uniform(0, static_cast<int64_t>(items.size()) - 1))];
  }

 private:
  uint64_t state_;
};

}  // namespace posttrain::synthetic
