// Dedup filters. The MinHash "permutations" are 64-bit mixes of each n-gram's FNV-1a hash with a
// per-permutation seed (SplitMix64 finaliser), the usual practical stand-in for permutations.
#include "synthetic/filters.h"

#include <cctype>
#include <stdexcept>

#include "common/sha256.h"

namespace posttrain::synthetic {

namespace {

uint64_t fnv1a(const char* data, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

std::string normalize_for_dedup(const std::string& text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

bool ExactDedup::add(const std::string& text) {
  return seen_.insert(sha256_hex(normalize_for_dedup(text))).second;
}

MinHash::MinHash(int num_hashes, int n, bool words, uint64_t seed) : n_(n), words_(words) {
  if (num_hashes < 1 || n < 1) throw std::invalid_argument("MinHash needs num_hashes, n >= 1");
  for (int i = 0; i < num_hashes; ++i) seeds_.push_back(mix(seed * 1000003ull + i));
}

std::vector<uint64_t> MinHash::signature(const std::string& raw) const {
  std::string text = normalize_for_dedup(raw);
  std::vector<uint64_t> grams;
  if (words_) {
    std::vector<std::pair<size_t, size_t>> spans;  // word start, end
    for (size_t i = 0; i < text.size();) {
      size_t j = text.find(' ', i);
      if (j == std::string::npos) j = text.size();
      spans.emplace_back(i, j);
      i = j + 1;
    }
    size_t n = static_cast<size_t>(n_);
    if (spans.size() <= n) {
      grams.push_back(fnv1a(text.data(), text.size()));
    } else {
      for (size_t w = 0; w + n <= spans.size(); ++w) {
        size_t a = spans[w].first, b = spans[w + n - 1].second;
        grams.push_back(fnv1a(text.data() + a, b - a));
      }
    }
  } else {
    size_t n = static_cast<size_t>(n_);
    if (text.size() <= n) grams.push_back(fnv1a(text.data(), text.size()));
    for (size_t i = 0; i + n <= text.size(); ++i) grams.push_back(fnv1a(text.data() + i, n));
  }
  std::vector<uint64_t> sig(seeds_.size(), UINT64_MAX);
  for (uint64_t g : grams) {
    for (size_t k = 0; k < seeds_.size(); ++k) {
      uint64_t h = mix(g ^ seeds_[k]);
      if (h < sig[k]) sig[k] = h;
    }
  }
  return sig;
}

double MinHash::similarity(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
  if (a.size() != b.size() || a.empty()) return 0;
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  return static_cast<double>(same) / a.size();
}

NearDupIndex::NearDupIndex(MinHash hasher, double threshold, int bands)
    : hasher_(std::move(hasher)), threshold_(threshold), bands_(bands) {
  if (bands < 1 || hasher_.num_hashes() % bands != 0) {
    throw std::invalid_argument("NearDupIndex: bands must divide the number of hashes");
  }
}

bool NearDupIndex::add(const std::string& text, double* similarity) {
  auto sig = hasher_.signature(text);
  int rows = hasher_.num_hashes() / bands_;
  std::vector<uint64_t> keys(bands_);
  std::set<size_t> candidates;
  for (int b = 0; b < bands_; ++b) {
    uint64_t key = 0x51ed270b27a5c7ull;
    for (int r = 0; r < rows; ++r) key = mix(key ^ sig[b * rows + r]);
    keys[b] = key;
    auto it = buckets_.find({b, key});
    if (it != buckets_.end()) candidates.insert(it->second.begin(), it->second.end());
  }
  double best = 0;
  for (size_t c : candidates) best = std::max(best, MinHash::similarity(sig, signatures_[c]));
  if (similarity) *similarity = best;
  if (best >= threshold_) return false;
  for (int b = 0; b < bands_; ++b) buckets_[{b, keys[b]}].push_back(signatures_.size());
  signatures_.push_back(std::move(sig));
  return true;
}

}  // namespace posttrain::synthetic
