// The reference log-prob cache: hits by pair, misses when the settings hash or the reference
// changes, store pairs in the store's table and others in the file, stale entries refused.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "datastore/store.h"
#include "dpo/ref_cache.h"
#include "tests/dpo/dpo_test_util.h"

namespace posttrain::dpo {
namespace {

using testing::TempDir;

TokenizedPair pair(std::vector<int64_t> chosen) {
  return pretokenized_pair({1, 2}, std::move(chosen), {9, 9}, 300, MaskOptions{},
                           Location{"p.jsonl", 1, ""});
}

TEST(DpoRefCache, FileCacheHitsAcrossInstancesAndMissesOnOtherSettings) {
  TempDir dir;
  const std::string file = dir / "ref_logprobs.jsonl";
  auto a = pair({5, 6, 7}), b = pair({5, 6});
  {
    RefCache cache("ref", "h1", "", file);
    EXPECT_FALSE(cache.get(a));
    cache.put({&a, &b}, {RefValues{-3.5, -2.0, 3, 2}, RefValues{-1.25, -2.0, 2, 2}});
    ASSERT_TRUE(cache.get(a));
    EXPECT_EQ(cache.get(a)->chosen, -3.5);
  }
  RefCache again("ref", "h1", "", file);  // a later run reads the file
  ASSERT_TRUE(again.get(b));
  EXPECT_EQ(again.get(b)->chosen, -1.25);
  EXPECT_EQ(again.get(b)->rejected_tokens, 2);
  EXPECT_FALSE(RefCache("ref", "h2", "", file).get(a));     // another settings hash
  EXPECT_FALSE(RefCache("other", "h1", "", file).get(a));   // another reference
  // Both settings coexist in the file.
  RefCache h2("ref", "h2", "", file);
  h2.put({&a}, {RefValues{-9, -9, 3, 2}});
  EXPECT_EQ(RefCache("ref", "h1", "", file).get(a)->chosen, -3.5);
  EXPECT_EQ(RefCache("ref", "h2", "", file).get(a)->chosen, -9);
}

TEST(DpoRefCache, StaleAndMalformedFileEntriesAreErrorsNamingTheLine) {
  TempDir dir;
  const std::string file = dir / "ref_logprobs.jsonl";
  auto a = pair({5, 6, 7});
  RefCache("ref", "h", "", file).put({&a}, {RefValues{-3.5, -2.0, 3, 2}});
  // Hand-edit the counts: the entry no longer describes the pair.
  std::ifstream in(file);
  nlohmann::json row = nlohmann::json::parse(in);
  row["chosen_tokens"] = 4;
  testing::write_file(file, row.dump() + "\n");
  try {
    RefCache("ref", "h", "", file).get(a);
    FAIL() << "expected a stale-entry error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("stale"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(file + ":1"), std::string::npos) << e.what();
  }
  row["chosen"] = "x";
  testing::write_file(file, row.dump() + "\n");
  EXPECT_THROW(RefCache("ref", "h", "", file).get(a), InputError);
}

TEST(DpoRefCache, StorePairsUseTheStoreTable) {
  TempDir dir;
  const std::string db = dir / "store.db";
  int64_t pair_id = 0;
  {
    auto store = datastore::Store::open(db);
    const int64_t prompt = store.add_prompt("q");
    datastore::NewResponse r;
    r.prompt_id = prompt;
    r.content = "good";
    const int64_t c = store.add_response(r);
    r.content = "bad";
    const int64_t rej = store.add_response(r);
    datastore::NewPair p;
    p.prompt_id = prompt;
    p.chosen_id = c;
    p.rejected_id = rej;
    pair_id = store.add_pair(p).first;
  }
  auto a = pair({5, 6, 7});
  a.store_id = pair_id;
  const std::string file = dir / "ref.jsonl";
  RefCache("ref", "h", db, file).put({&a}, {RefValues{-3.5, -2.0, 3, 2}});
  EXPECT_FALSE(std::ifstream(file).good());  // nothing in the file
  auto store = datastore::Store::open(db);
  auto v = store.get_ref_logprobs(pair_id, "ref", "h");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->chosen, -3.5);
  EXPECT_EQ(RefCache("ref", "h", db, file).get(a)->rejected, -2.0);
  EXPECT_FALSE(RefCache("ref", "h2", db, file).get(a));
  // A stale store row names the store and the pair.
  store.put_ref_logprobs(pair_id, "ref", "h", {-1, -1, 7, 2});
  try {
    RefCache("ref", "h", db, file).get(a);
    FAIL() << "expected a stale-entry error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("ref_logprobs pair " + std::to_string(pair_id)),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace posttrain::dpo
