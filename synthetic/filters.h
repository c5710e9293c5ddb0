// Filters for generated data: exact duplicates (SHA-256 of whitespace/case-normalised text),
// near duplicates (MinHash signatures over character or word n-grams, banded LSH to find
// candidates, estimated Jaccard similarity against a threshold), and length limits.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace posttrain::synthetic {

// Lower case, runs of whitespace collapsed to one space, trimmed.
std::string normalize_for_dedup(const std::string& text);

class ExactDedup {
 public:
  // True when `text` (normalised) was not seen before; remembers it.
  bool add(const std::string& text);

 private:
  std::set<std::string> seen_;
};

class MinHash {
 public:
  // num_hashes permutations; n-grams of `n` characters (words=false) or `n` words (words=true).
  MinHash(int num_hashes = 64, int n = 5, bool words = false, uint64_t seed = 1);
  std::vector<uint64_t> signature(const std::string& text) const;
  // Share of equal positions: an unbiased estimate of the Jaccard similarity of the n-gram sets.
  static double similarity(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b);
  int num_hashes() const { return static_cast<int>(seeds_.size()); }

 private:
  std::vector<uint64_t> seeds_;
  int n_;
  bool words_;
};

// Near-duplicate detector over a growing set.
class NearDupIndex {
 public:
  // bands must divide the number of hashes of `hasher`.
  NearDupIndex(MinHash hasher, double threshold, int bands = 16);
  // True when `text` is not a near duplicate of anything added before; then it is added.
  // *similarity (optional) receives the highest similarity found among the candidates.
  bool add(const std::string& text, double* similarity = nullptr);

 private:
  MinHash hasher_;
  double threshold_;
  int bands_;
  std::vector<std::vector<uint64_t>> signatures_;
  std::map<std::pair<int, uint64_t>, std::vector<size_t>> buckets_;
};

struct LengthLimits {
  int64_t min_chars = 1;
  int64_t max_chars = 20000;
  bool ok(const std::string& text) const {
    auto n = static_cast<int64_t>(text.size());
    return n >= min_chars && n <= max_chars;
  }
};

}  // namespace posttrain::synthetic
