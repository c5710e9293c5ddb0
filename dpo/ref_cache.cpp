// The reference log-prob cache (see ref_cache.h).
#include "dpo/ref_cache.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/jsonl.h"
#include "common/sha256.h"
#ifdef POSTTRAIN_DPO_WITH_STORE
#include "datastore/store.h"
#endif

namespace fs = std::filesystem;

namespace posttrain::dpo {
namespace {

std::string file_key(const std::string& reference, const std::string& hash,
                     const std::string& content) {
  return reference + "\n" + hash + "\n" + content;
}

// An entry's token counts must be the pair's as tokenised now.
void check_counts(const RefValues& v, const TokenizedPair& p, const std::string& entry) {
  if (v.chosen_tokens != p.chosen_count() || v.rejected_tokens != p.rejected_count()) {
    throw InputError(p.where, "stale reference log-prob cache entry (" + entry + "): it counts " +
                                  std::to_string(v.chosen_tokens) + "/" +
                                  std::to_string(v.rejected_tokens) +
                                  " chosen/rejected tokens, the pair has " +
                                  std::to_string(p.chosen_count()) + "/" +
                                  std::to_string(p.rejected_count()));
  }
}

}  // namespace

std::string reference_name(const std::string& dir) {
  return fs::weakly_canonical(fs::absolute(dir)).string();
}

RefCache::RefCache(std::string reference, std::string hash, std::string store_path,
                   std::string file_path)
    : reference_(std::move(reference)), hash_(std::move(hash)),
      store_path_(std::move(store_path)), file_path_(std::move(file_path)) {
#ifndef POSTTRAIN_DPO_WITH_STORE
  if (!store_path_.empty()) throw UsageError("data.store: this build has no datastore");
#endif
}

RefCache::~RefCache() = default;

void RefCache::load_file() {
  if (file_loaded_) return;
  file_loaded_ = true;
  if (!fs::exists(file_path_)) return;
  JsonlReader reader(file_path_);
  nlohmann::json row;
  while (reader.next(&row)) {
    const std::string ref = require_string(row, "reference", reader.where());
    const std::string hash = require_string(row, "settings_hash", reader.where());
    const std::string key = require_string(row, "key", reader.where());
    FileEntry e;
    e.line = reader.line();
    for (const char* f : {"chosen", "rejected"}) {
      const auto& v = require_field(row, f, reader.where());
      if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() > 1e-6) {
        throw InputError(reader.where(f), "expected a finite log-prob <= 0");
      }
    }
    e.values.chosen = row["chosen"].get<double>();
    e.values.rejected = row["rejected"].get<double>();
    e.values.chosen_tokens = require_int(row, "chosen_tokens", reader.where());
    e.values.rejected_tokens = require_int(row, "rejected_tokens", reader.where());
    file_[file_key(ref, hash, key)] = e;
    file_lines_.push_back(row.dump());
  }
}

std::optional<RefValues> RefCache::get(const TokenizedPair& p) {
#ifdef POSTTRAIN_DPO_WITH_STORE
  if (p.store_id && !store_path_.empty()) {
    if (!store_loaded_) {
      datastore::Store::Options opts;
      opts.read_only = true;
      auto store = datastore::Store::open(store_path_, opts);
      for (const auto& [id, v] : store.ref_logprobs_for(reference_, hash_)) {
        store_[id] = RefValues{v.chosen, v.rejected, v.chosen_tokens, v.rejected_tokens};
      }
      store_loaded_ = true;
    }
    auto it = store_.find(*p.store_id);
    if (it == store_.end()) return std::nullopt;
    check_counts(it->second, p,
                 store_path_ + " ref_logprobs pair " + std::to_string(*p.store_id));
    return it->second;
  }
#endif
  load_file();
  auto it = file_.find(file_key(reference_, hash_, p.content_key()));
  if (it == file_.end()) return std::nullopt;
  check_counts(it->second.values, p, file_path_ + ":" + std::to_string(it->second.line));
  return it->second.values;
}

void RefCache::put(const std::vector<const TokenizedPair*>& pairs,
                   const std::vector<RefValues>& values) {
  std::vector<std::string> new_lines;
#ifdef POSTTRAIN_DPO_WITH_STORE
  std::optional<datastore::Store> store;
  std::optional<datastore::Transaction> tx;
#endif
  for (size_t i = 0; i < pairs.size(); ++i) {
    const TokenizedPair& p = *pairs[i];
    const RefValues& v = values[i];
#ifdef POSTTRAIN_DPO_WITH_STORE
    if (p.store_id && !store_path_.empty()) {
      if (!store) {
        store.emplace(datastore::Store::open(store_path_));
        tx.emplace(store->db());  // as Store::transaction(), held in place
      }
      store->put_ref_logprobs(*p.store_id, reference_, hash_,
                              {v.chosen, v.rejected, v.chosen_tokens, v.rejected_tokens});
      store_[*p.store_id] = v;
      continue;
    }
#endif
    load_file();
    const std::string key = p.content_key();
    const nlohmann::json row = {{"reference", reference_}, {"settings_hash", hash_},
                                {"key", key},             {"chosen", v.chosen},
                                {"rejected", v.rejected}, {"chosen_tokens", v.chosen_tokens},
                                {"rejected_tokens", v.rejected_tokens}};
    new_lines.push_back(row.dump());
    file_[file_key(reference_, hash_, key)] =
        FileEntry{v, static_cast<int64_t>(file_lines_.size() + new_lines.size())};
  }
#ifdef POSTTRAIN_DPO_WITH_STORE
  if (tx) tx->commit();
#endif
  if (new_lines.empty()) return;
  // Whole file to a temporary, then rename: a crash leaves the old file or the new one.
  const std::string tmp = file_path_ + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& l : file_lines_) out << l << "\n";
    for (const auto& l : new_lines) out << l << "\n";
    out.flush();
    if (!out) throw IoError("cannot write " + tmp);
  }
  fs::rename(tmp, file_path_);
  file_lines_.insert(file_lines_.end(), new_lines.begin(), new_lines.end());
}

}  // namespace posttrain::dpo
