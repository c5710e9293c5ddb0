// Restricting what a problem generator draws: some of its families (`synth --family`) and one
// side of a fixed train / held-out split of the problem space (`synth --split`).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace posttrain::synthetic {

// Which side of the split a run draws from. The split is a function of the prompt text alone
// (FNV-1a 64 of it, 1 in 10 held out), so a held-out problem can never be drawn for training,
// whatever the seeds and counts; `all` (the default) draws as before the split existed.
enum class Split { kAll, kTrain, kHeldout };
inline Split parse_split(const std::string& name) {  // all | train | heldout
  if (name == "all") return Split::kAll;
  if (name == "train") return Split::kTrain;
  if (name == "heldout") return Split::kHeldout;
  throw UsageError("--split must be all, train or heldout (got '" + name + "')");
}

inline bool in_heldout_split(const std::string& prompt) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : prompt) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h % 10 == 0;
}

inline bool in_split(Split split, const std::string& prompt) {
  return split == Split::kAll || (split == Split::kHeldout) == in_heldout_split(prompt);
}

struct DrawFilter {
  std::vector<std::string> families;  // empty = every default family
  Split split = Split::kAll;
};

// The entries of `table` ({name, generator}) named in `wanted`, in table order; all of them
// when `wanted` is empty. A name the table lacks is a UsageError listing the known ones.
template <typename Generator>
std::vector<std::pair<std::string, Generator>> select_families(
    const std::vector<std::pair<std::string, Generator>>& table,
    const std::vector<std::string>& wanted, const std::string& kind) {
  if (wanted.empty()) return table;
  std::string known;
  for (const auto& entry : table) known += (known.empty() ? "" : ", ") + entry.first;
  for (const auto& name : wanted) {
    bool found = false;
    for (const auto& entry : table) found = found || entry.first == name;
    if (!found) {
      throw UsageError("--family: " + kind + " has no family '" + name + "' (known: " + known +
                       ")");
    }
  }
  std::vector<std::pair<std::string, Generator>> out;
  for (const auto& entry : table) {
    for (const auto& name : wanted) {
      if (entry.first == name) {
        out.push_back(entry);
        break;
      }
    }
  }
  return out;
}

}  // namespace posttrain::synthetic
