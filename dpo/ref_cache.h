// Reference log-probs computed once and reused by later epochs, runs and rounds. Each entry is
// keyed by the pair, the reference checkpoint and a settings hash of everything that changes the
// values (tokenizer, chat template, truncation, masks, the reference's weights), so a changed
// setting misses instead of returning a stale value. Store pairs live in the store's
// ref_logprobs table (by pair id); other pairs (JSONL sources, or dpo.reference_cache off) in
// a JSONL file under OUT, by a hash of the pair's tokens and masks. An entry whose token counts
// disagree with the pair as tokenised now is stale: an error naming the store row or the file
// line.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "dpo/pair_tokens.h"

namespace posttrain::dpo {

// Reference log-probs of one pair: sums over the counted (masked-in) tokens.
struct RefValues {
  double chosen = 0, rejected = 0;
  int64_t chosen_tokens = 0, rejected_tokens = 0;
};

// The reference's name in cache keys: its absolute path. (Its weights enter the settings hash
// through core::checkpoint_fingerprint, so a rewritten checkpoint misses.)
std::string reference_name(const std::string& reference_dir);

class RefCache {
 public:
  // store_path: "" = no store (every pair goes to the file). file_path: the JSONL cache file
  // (created on first put).
  RefCache(std::string reference, std::string settings_hash, std::string store_path,
           std::string file_path);
  ~RefCache();

  // The cached values of `pair`, or nullopt on a miss. Throws InputError on a stale entry.
  std::optional<RefValues> get(const TokenizedPair& pair);
  // Stores values of several pairs at once: one store transaction, one atomic file rewrite.
  void put(const std::vector<const TokenizedPair*>& pairs, const std::vector<RefValues>& values);

  const std::string& file_path() const { return file_path_; }

 private:
  struct FileEntry {
    RefValues values;
    int64_t line = 0;
  };
  void load_file();

  std::string reference_, hash_, store_path_, file_path_;
  bool file_loaded_ = false;
  // (reference, settings hash, content key) -> entry, every line of the file.
  std::map<std::string, FileEntry> file_;
  std::vector<std::string> file_lines_;  // kept verbatim on rewrite
  std::map<int64_t, RefValues> store_;   // this (reference, hash)'s store entries by pair id
  bool store_loaded_ = false;
};

}  // namespace posttrain::dpo
