// The reward stage's data: tokenised rankings split at the shared prompt, pairs and their margins,
// near-duplicate and strength filters with their counts, store rankings without repeated pairs,
// and bad input named by file, line and field.
#include "reward/data.h"

#include <gtest/gtest.h>

#include "common/files.h"

#include <filesystem>
#include <fstream>

#include "core/tokenizer/chat_template.h"
#include "datastore/import.h"
#include "reward/reward.h"

namespace fs = std::filesystem;

namespace posttrain::reward {
namespace {

core::PreferenceReadOptions chat() {
  core::PreferenceReadOptions o;
  o.strings_as_chat = true;
  return o;
}

Ranking ranking(const std::string& line) {
  Ranking r;
  r.example = core::parse_preference_example(nlohmann::json::parse(line),
                                             Location{"mem.jsonl", 1, ""}, chat());
  return r;
}

std::string temp_file(const std::string& name, const std::string& text) {
  const auto dir = fs::temp_directory_path() / ("posttrain_reward_data_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const auto path = (dir / name).string();
  std::ofstream(path) << text;
  return path;
}

TEST(RewardData, SplitsAtTheSharedPromptAndKeepsEachSequence) {
  const auto tok = core::Tokenizer::byte_level();
  const auto r = ranking(R"({"prompt":"2+2?","chosen":"4","rejected":"5","strength":"better"})");
  int64_t dropped = 0;
  const auto pairs = distinct_pairs(r, {}, &dropped);
  ASSERT_EQ(pairs.size(), 1u);
  bool truncated = false;
  const auto t = tokenize_ranking(tok, r, pairs, {}, &truncated);
  ASSERT_TRUE(t.has_value());
  EXPECT_FALSE(truncated);
  // Each response's sequence is exactly what the chat template renders for prompt + response.
  for (int k = 0; k < 2; ++k) {
    std::vector<core::ChatMessage> m = {{"user", "2+2?", -1},
                                        {"assistant", k == 0 ? "4" : "5", -1}};
    const auto want = core::render_chat(tok, m, core::ChatFormat::kLlama3).ids;
    std::vector<int64_t> got = t->prompt;
    got.insert(got.end(), t->responses[k].begin(), t->responses[k].end());
    EXPECT_EQ(got, want) << k;
  }
  // The split is the longest common prefix: the responses differ at their first token, and
  // both end with <|eot_id|>, where the reward is read.
  EXPECT_NE(t->responses[0][0], t->responses[1][0]);
  EXPECT_EQ(t->responses[0].back(), *tok.token_id("<|eot_id|>"));
  ASSERT_EQ(t->pairs.size(), 1u);
  EXPECT_EQ(t->pairs[0].better, 0);
  EXPECT_EQ(t->pairs[0].worse, 1);
  EXPECT_FLOAT_EQ(t->pairs[0].margin, 2.0f / 3.0f);  // better (datastore/strength.h)
}

TEST(RewardData, EditedRankingGivesThreePairsWithTheirMargins) {
  const auto tok = core::Tokenizer::byte_level();
  const auto r = ranking(
      R"({"prompt":"P","chosen":"c","rejected":"r","edited":"E","strength":"significantly_better"})");
  ASSERT_TRUE(r.example.edited);
  int64_t dropped = 0;
  const auto pairs = distinct_pairs(r, {}, &dropped);
  bool truncated = false;
  const auto t = tokenize_ranking(tok, r, pairs, {}, &truncated);
  ASSERT_TRUE(t.has_value());
  ASSERT_EQ(t->responses.size(), 3u);
  ASSERT_EQ(t->pairs.size(), 3u);
  // edited > chosen carries no label (0); edited > rejected and chosen > rejected carry
  // significantly_better's 1.
  EXPECT_EQ(std::make_pair(t->pairs[0].better, t->pairs[0].worse), std::make_pair(0, 1));
  EXPECT_FLOAT_EQ(t->pairs[0].margin, 0.0f);
  EXPECT_EQ(std::make_pair(t->pairs[1].better, t->pairs[1].worse), std::make_pair(0, 2));
  EXPECT_FLOAT_EQ(t->pairs[1].margin, 1.0f);
  EXPECT_EQ(std::make_pair(t->pairs[2].better, t->pairs[2].worse), std::make_pair(1, 2));
  EXPECT_FLOAT_EQ(t->pairs[2].margin, 1.0f);
}

TEST(RewardData, NearDuplicatePairsAreDroppedAndCounted) {
  // "Yes." and " yes. " normalise alike: of the three pairs of the ranking only the two with
  // "No" are left.
  const auto r = ranking(
      R"({"prompt":"Q","responses":["Yes.", " yes. ", "No"],"ranking":[0,1,2]})");
  int64_t dropped = 0;
  const auto pairs = distinct_pairs(r, {}, &dropped);
  EXPECT_EQ(dropped, 1);
  EXPECT_EQ(pairs, (std::vector<std::pair<int, int>>{{0, 2}, {1, 2}}));
  core::NearDuplicateOptions off;
  off.rule = core::NearDuplicateRule::kOff;
  dropped = 0;
  EXPECT_EQ(distinct_pairs(r, off, &dropped).size(), 3u);
  EXPECT_EQ(dropped, 0);
}

TEST(RewardData, OverlongRankingsAreTruncatedOrDropped) {
  const auto tok = core::Tokenizer::byte_level();
  const auto r = ranking(R"({"prompt":"a long prompt","chosen":"yes","rejected":"no"})");
  int64_t dropped = 0;
  const auto pairs = distinct_pairs(r, {}, &dropped);
  TokenizeOptions o;
  bool truncated = false;
  const auto full = tokenize_ranking(tok, r, pairs, o, &truncated);
  ASSERT_TRUE(full.has_value());
  const int64_t longest = std::max(full->sequence_length(0), full->sequence_length(1));
  o.max_seq_len = longest - 1;
  const auto cut = tokenize_ranking(tok, r, pairs, o, &truncated);
  ASSERT_TRUE(cut.has_value());
  EXPECT_TRUE(truncated);
  EXPECT_LE(cut->sequence_length(0), longest - 1);
  EXPECT_LE(cut->sequence_length(1), longest - 1);
  // Cut inside the shared prompt, both sequences become the same tokens: no preference left.
  o.max_seq_len = static_cast<int64_t>(full->prompt.size());
  EXPECT_FALSE(tokenize_ranking(tok, r, pairs, o, &truncated).has_value());
  o.max_seq_len = longest - 1;
  o.overlong = core::OverlongPolicy::kDrop;
  EXPECT_FALSE(tokenize_ranking(tok, r, pairs, o, &truncated).has_value());
}

TEST(RewardData, JsonlFiltersAreCounted) {
  const auto path = temp_file(
      "filters.jsonl",
      R"({"prompt":"a","chosen":"x","rejected":"y","strength":"better"})"
      "\n"
      R"({"prompt":"b","chosen":"same","rejected":"same"})"
      "\n"
      R"({"prompt":"c","chosen":"x","rejected":"y","strength":"slightly_better"})"
      "\n"
      R"({"prompt":"d","chosen":"x","rejected":"y"})"
      "\n");
  SourceCounts c;
  const auto rankings = read_jsonl_rankings(path, false, datastore::Strength::kBetter, &c);
  EXPECT_EQ(c.read, 4);
  EXPECT_EQ(c.near_duplicate_pairs, 1);  // identical responses
  EXPECT_EQ(c.filtered_strength, 1);     // slightly_better < better
  ASSERT_EQ(rankings.size(), 2u);        // better, and the unlabelled one
  // No strength filter: slightly_better stays.
  SourceCounts all;
  EXPECT_EQ(read_jsonl_rankings(path, false, std::nullopt, &all).size(), 3u);
}

TEST(RewardData, BadRowsNameFileLineAndField) {
  const auto path = temp_file("bad.jsonl",
                              R"({"prompt":"a","chosen":"x","rejected":"y"})"
                              "\n"
                              R"({"prompt":"b","chosen":"x","rejected":"y","strength":"great"})"
                              "\n");
  SourceCounts c;
  try {
    read_jsonl_rankings(path, false, std::nullopt, &c);
    FAIL() << "an unknown strength label was accepted";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("bad.jsonl:2"), std::string::npos) << what;
    EXPECT_NE(what.find("strength"), std::string::npos) << what;
  }
  const auto empty = temp_file("empty.jsonl", R"({"prompt":"a","chosen":"","rejected":"y"})"
                                              "\n");
  EXPECT_THROW(read_jsonl_rankings(empty, false, std::nullopt, &c), InputError);
  const auto none = temp_file("none.jsonl", R"({"prompt":"a","responses":[],"ranking":[]})"
                                            "\n");
  EXPECT_THROW(read_jsonl_rankings(none, false, std::nullopt, &c), InputError);
}

TEST(RewardData, StoreRankingsTrainEachOrderedPairOnce) {
  const auto dir = fs::temp_directory_path() / ("posttrain_reward_store_" + std::to_string(getpid()));
  posttrain::remove_tree((dir).string());
  fs::create_directories(dir);
  const auto db = (dir / "s.db").string();
  {
    auto store = datastore::Store::open(db);
    const auto in = temp_file("rank.jsonl",
                              R"({"prompt":"P","responses":["a","b","c"],"ranking":[0,1,2],"edited":"E"})"
                              "\n");
    datastore::ImportOptions imp;
    imp.format = datastore::ImportFormat::kRanking;
    datastore::import_jsonl(store, in, imp);
  }
  // Imported as pairs a>b, a>c, b>c, each with the edit E: read back as rankings
  // E>a>b (3 pairs), then E>a>c less E>a (2), then E>b>c less E>b, E>c (1): 6 distinct pairs.
  const auto rankings = read_store_rankings(db, {}, std::nullopt, chat());
  size_t pairs = 0;
  for (const auto& r : rankings) pairs += r.pairs.size();
  EXPECT_EQ(pairs, 6u);
  ASSERT_EQ(rankings.size(), 3u);
  EXPECT_TRUE(rankings[0].example.edited);
  EXPECT_EQ(rankings[0].pairs.size(), 3u);
  EXPECT_EQ(rankings[2].pairs, (std::vector<std::pair<int, int>>{{1, 2}}));
  // Round filter: the import wrote round 0; round 1 has nothing.
  EXPECT_TRUE(read_store_rankings(db, {1}, std::nullopt, chat()).empty());
  posttrain::remove_tree((dir).string());
}

}  // namespace
}  // namespace posttrain::reward
