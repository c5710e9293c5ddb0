// See bpe.h.
#include "core/tokenizer/bpe.h"

#include <nlohmann/json.hpp>
#include <queue>

#include "core/tokenizer/unicode.h"

namespace posttrain::core {

using nlohmann::json;

namespace {

constexpr size_t kMaxCachedPiece = 256;  // bytes; longer pieces are merged every time
constexpr size_t kMaxCacheEntries = 1 << 16;

Location at(const Location& where, const std::string& field) {
  return {where.file, where.line, field};
}

std::string byte_level_string(const char* raw, size_t n) {
  std::string out;
  out.reserve(n * 2);
  const auto& map = unicode::byte_to_char();
  for (size_t i = 0; i < n; ++i)
    unicode::append_utf8(map[static_cast<unsigned char>(raw[i])], &out);
  return out;
}

}  // namespace

void BpeModel::load(const json& spec, const Location& where) {
  if (!spec.is_object()) throw InputError(at(where, "model"), "expected an object");
  if (!spec.contains("type") || spec["type"] != "BPE") {
    std::string type = spec.contains("type") ? spec["type"].dump() : "(missing)";
    throw InputError(at(where, "model.type"),
                     "unsupported model type " + type + " (only byte-level \"BPE\" is supported)");
  }
  auto refuse_if = [&](const char* key, bool bad, const std::string& why) {
    if (spec.contains(key) && bad) throw InputError(at(where, std::string("model.") + key), why);
  };
  refuse_if("dropout",
            spec.contains("dropout") && !spec["dropout"].is_null() &&
                !(spec["dropout"].is_number() && spec["dropout"].get<double>() == 0.0),
            "BPE dropout is not supported");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    refuse_if(key,
              spec.contains(key) && !spec[key].is_null() &&
                  !(spec[key].is_string() && spec[key].get<std::string>().empty()),
              std::string(key) + " is not supported (byte-level BPE has none)");
  }
  refuse_if("byte_fallback", spec.contains("byte_fallback") && spec["byte_fallback"] == true,
            "byte_fallback is not supported (a byte-level BPE needs none)");
  ignore_merges_ = spec.contains("ignore_merges") && spec["ignore_merges"] == true;
  fuse_unk_ = spec.contains("fuse_unk") && spec["fuse_unk"] == true;

  if (!spec.contains("vocab") || !spec["vocab"].is_object()) {
    throw InputError(at(where, "model.vocab"), "expected an object of token → id");
  }
  // Ids index a table of (highest id + 1) entries: allow holes, but not an id so far past the
  // number of tokens (1e9 in a vocabulary of 300) that the table would take gigabytes.
  const int64_t id_limit = 2 * static_cast<int64_t>(spec["vocab"].size()) + 1024;
  for (const auto& item : spec["vocab"].items()) {
    if (!item.value().is_number_integer() || item.value().get<int64_t>() < 0) {
      throw InputError(at(where, "model.vocab." + item.key()), "expected a non-negative id");
    }
    if (item.value().get<int64_t>() >= id_limit) {
      throw InputError(at(where, "model.vocab." + item.key()),
                       "id " + std::to_string(item.value().get<int64_t>()) + " is far past the " +
                           std::to_string(spec["vocab"].size()) +
                           " tokens of the vocabulary (ids must be below " +
                           std::to_string(id_limit) + ")");
    }
    auto id = item.value().get<int32_t>();
    if (item.key().empty()) throw InputError(at(where, "model.vocab"), "empty token string");
    vocab_[item.key()] = id;
    if (static_cast<size_t>(id) >= id_to_token_.size()) id_to_token_.resize(id + 1);
    if (!id_to_token_[id].empty()) {
      throw InputError(at(where, "model.vocab." + item.key()),
                       "id " + std::to_string(id) + " is used twice");
    }
    id_to_token_[id] = item.key();
  }

  const auto& map = unicode::byte_to_char();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    unicode::append_utf8(map[b], &s);
    auto it = vocab_.find(s);
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }
  if (spec.contains("unk_token") && spec["unk_token"].is_string()) {
    auto it = vocab_.find(spec["unk_token"].get<std::string>());
    if (it == vocab_.end()) {
      throw InputError(at(where, "model.unk_token"), "unk_token is not in the vocabulary");
    }
    unk_id_ = it->second;
  }

  if (!spec.contains("merges") || !spec["merges"].is_array()) {
    throw InputError(at(where, "model.merges"), "expected a list");
  }
  const json& merges = spec["merges"];
  merges_.reserve(merges.size() * 2);
  for (size_t i = 0; i < merges.size(); ++i) {
    Location here = at(where, "model.merges[" + std::to_string(i) + "]");
    std::string left, right;
    if (merges[i].is_string()) {
      const std::string m = merges[i].get<std::string>();
      size_t space = m.find(' ');
      if (space == std::string::npos || m.find(' ', space + 1) != std::string::npos) {
        throw InputError(here, "expected \"left right\"");
      }
      left = m.substr(0, space);
      right = m.substr(space + 1);
    } else if (merges[i].is_array() && merges[i].size() == 2 && merges[i][0].is_string() &&
               merges[i][1].is_string()) {
      left = merges[i][0].get<std::string>();
      right = merges[i][1].get<std::string>();
    } else {
      throw InputError(here, "expected \"left right\" or [left, right]");
    }
    auto l = vocab_.find(left), r = vocab_.find(right), m = vocab_.find(left + right);
    if (l == vocab_.end() || r == vocab_.end() || m == vocab_.end()) {
      throw InputError(here, "merge of '" + left + "' and '" + right +
                                 "' uses a token missing from the vocabulary");
    }
    uint64_t key = (static_cast<uint64_t>(l->second) << 32) | static_cast<uint32_t>(r->second);
    merges_.emplace(key, Merge{static_cast<int32_t>(i), m->second});  // first rank wins
  }
}

std::optional<int64_t> BpeModel::token_id(const std::string& token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::merge_word(const char* piece, size_t n, std::vector<int32_t>* ids,
                          std::vector<uint32_t>* lens) const {
  if (ignore_merges_) {
    auto it = vocab_.find(byte_level_string(piece, n));
    if (it != vocab_.end()) {
      ids->push_back(it->second);
      lens->push_back(static_cast<uint32_t>(n));
      return;
    }
  }
  // Initial symbols: one per byte (unknown bytes become unk, fused when asked, else dropped).
  struct Symbol {
    int32_t id;
    uint32_t len;
    int32_t prev, next;
  };
  std::vector<Symbol> sym;
  sym.reserve(n);
  uint32_t pending = 0;  // bytes of dropped characters, credited to the next symbol
  for (size_t k = 0; k < n; ++k) {
    auto b = static_cast<unsigned char>(piece[k]);
    int32_t id = byte_ids_[b];
    if (id < 0) {
      if (!unk_id_) {
        ++pending;
        continue;
      }
      if (fuse_unk_ && !sym.empty() && sym.back().id == *unk_id_) {
        ++sym.back().len;
        continue;
      }
      id = *unk_id_;
    }
    sym.push_back({id, 1 + pending, static_cast<int32_t>(sym.size()) - 1,
                   static_cast<int32_t>(sym.size()) + 1});
    pending = 0;
  }
  if (sym.empty()) return;
  sym.back().next = -1;
  sym.back().len += pending;

  struct Candidate {
    int32_t rank, pos, new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push_pair = [&](int32_t pos) {
    int32_t next = sym[pos].next;
    if (next < 0) return;
    uint64_t key = (static_cast<uint64_t>(sym[pos].id) << 32) | static_cast<uint32_t>(sym[next].id);
    auto it = merges_.find(key);
    if (it != merges_.end()) heap.push({it->second.rank, pos, it->second.new_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) push_pair(i);

  while (!heap.empty()) {
    Candidate top = heap.top();
    heap.pop();
    Symbol& left = sym[top.pos];
    if (left.len == 0 || left.next < 0) continue;  // merged away, or now last
    Symbol& right = sym[left.next];
    uint64_t key = (static_cast<uint64_t>(left.id) << 32) | static_cast<uint32_t>(right.id);
    auto it = merges_.find(key);
    if (it == merges_.end() || it->second.rank != top.rank) continue;  // stale candidate
    left.id = top.new_id;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) {
    ids->push_back(sym[i].id);
    lens->push_back(sym[i].len);
  }
}

void BpeModel::encode_piece(const char* piece, size_t n, std::vector<int64_t>* ids,
                            std::vector<size_t>* ends) const {
  if (n == 1 && byte_ids_[static_cast<unsigned char>(piece[0])] >= 0) {  // one byte: no merges
    ids->push_back(byte_ids_[static_cast<unsigned char>(piece[0])]);
    if (ends) ends->push_back(1);
    return;
  }
  auto emit = [&](const std::vector<uint32_t>& packed) {
    size_t end = 0;
    for (size_t i = 0; i < packed.size(); i += 2) {
      ids->push_back(static_cast<int32_t>(packed[i]));
      end += packed[i + 1];
      if (ends) ends->push_back(end);
    }
  };
  const bool cacheable = n <= kMaxCachedPiece;
  std::string key;
  if (cacheable) {
    key.assign(piece, n);
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      emit(it->second);
      return;
    }
  }
  thread_local std::vector<int32_t> word_ids;
  thread_local std::vector<uint32_t> lens;
  word_ids.clear();
  lens.clear();
  merge_word(piece, n, &word_ids, &lens);
  std::vector<uint32_t> packed(word_ids.size() * 2);
  for (size_t i = 0; i < word_ids.size(); ++i) {
    packed[2 * i] = static_cast<uint32_t>(word_ids[i]);
    packed[2 * i + 1] = lens[i];
  }
  emit(packed);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    if (cache_.bucket_count() < kMaxCacheEntries) cache_.reserve(kMaxCacheEntries);
    cache_.emplace(std::move(key), std::move(packed));
  }
}

}  // namespace posttrain::core
