// The BPE model of a byte-level tokenizer.json: vocabulary, merges by rank, ignore_merges, and
// the byte → character mapping (each byte of a piece becomes one initial symbol). Merging uses a
// min-heap of candidate pairs over a linked list of symbols (lowest rank first, leftmost on
// ties, as Hugging Face does), and results are cached per piece.
#pragma once

#include <cstdint>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/error.h"

namespace posttrain::core {

class BpeModel {
 public:
  // Loads the "model" object (type BPE). Unsupported options (dropout, subword prefixes/
  // suffixes, byte_fallback) throw InputError naming `where` plus "model.<field>".
  void load(const nlohmann::json& spec, const Location& where);

  BpeModel() = default;
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;
  BpeModel(BpeModel&&) = delete;

  // Appends the ids of one piece (raw bytes piece[0, n)) and, when `ends` is given, the end
  // offset in the piece of each token.
  void encode_piece(const char* piece, size_t n, std::vector<int64_t>* ids,
                    std::vector<size_t>* ends) const;

  int64_t size() const { return static_cast<int64_t>(id_to_token_.size()); }  // highest id + 1
  std::optional<int64_t> token_id(const std::string& token) const;
  // Token string (byte-level characters) of `id`, empty when the id has no token.
  const std::string& token(int64_t id) const { return id_to_token_[id]; }
  bool has_id(int64_t id) const { return id >= 0 && id < size() && !id_to_token_[id].empty(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  void merge_word(const char* piece, size_t n, std::vector<int32_t>* ids,
                  std::vector<uint32_t>* lens) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) → merge
  int32_t byte_ids_[256];                       // id of each byte's one-character token, or -1
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;

  // Piece → its tokens as (id, byte length) pairs, flattened. Bounded; cleared when full.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<uint32_t>> cache_;
};

}  // namespace posttrain::core
