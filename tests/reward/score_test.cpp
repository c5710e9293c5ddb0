// `reward score`'s library: rewards equal transformers' LlamaForSequenceClassification on the
// committed fixture (tests/fixtures/make_fixtures.py), whatever the batching; bad rows are named
// and write nothing; with a store, scores are recorded per (response, checkpoint) and reused.
#include "reward/score.h"

#include <gtest/gtest.h>

#include "common/files.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/model/llama_config.h"
#include "datastore/store.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace posttrain::reward {
namespace {

json read_json(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

std::vector<json> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}

class RewardScore : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("posttrain_reward_score_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    posttrain::remove_tree((dir_).string());
    fs::create_directories(dir_);
  }
  void TearDown() override { posttrain::remove_tree((dir_).string()); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name)) << text;
  }
  // A small reward model with the built-in byte-level tokenizer (pad <|finetune_right_pad_id|>).
  std::string tiny_rm() const {
    const auto tok = core::Tokenizer::byte_level();
    core::LlamaConfig c = core::preset_config("tiny");
    c.vocab_size = tok.vocab_size();
    c.num_hidden_layers = 1;
    c.kind = core::ModelKind::kRewardModel;
    c.bos_token_id = tok.bos_id();
    c.eos_token_ids = tok.eos_ids();
    c.pad_token_id = tok.pad_id();
    const std::string out = path("rm");
    core::init_checkpoint(c, out, 5, at::kFloat);
    tok.save_dir(out);
    return out;
  }
  fs::path dir_;
};

TEST_F(RewardScore, MatchesTransformersOnTheFixture) {
  const std::string model = std::string(POSTTRAIN_FIXTURES) + "/models/reward";
  const json ref = read_json(model + "/reference.json");
  std::string rows;
  for (size_t i = 0; i < ref["input_ids"].size(); ++i) {
    std::vector<int64_t> ids;
    for (size_t t = 0; t < ref["input_ids"][i].size(); ++t) {
      if (ref["attention_mask"][i][t].get<int>() == 1) ids.push_back(ref["input_ids"][i][t]);
    }
    rows += json{{"input_ids", ids}, {"id", i}}.dump() + "\n";
  }
  write("in.jsonl", rows);
  for (int64_t batch : {1, 2, 3}) {
    ScoreOptions o;
    o.model_dir = model;
    o.batch_size = batch;
    const auto s = score_file(path("in.jsonl"), path("out.jsonl"), o);
    EXPECT_EQ(s.rows, 3);
    EXPECT_EQ(s.computed, 3);
    const auto out = read_lines(path("out.jsonl"));
    ASSERT_EQ(out.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(out[i]["id"], i);  // the input line comes back with the reward added
      EXPECT_NEAR(out[i]["reward"].get<double>(), ref["rewards"][i].get<double>(), 1e-4)
          << "batch " << batch << " row " << i;
    }
  }
}

TEST_F(RewardScore, BadRowsAreNamedAndNothingIsWritten) {
  const std::string model = std::string(POSTTRAIN_FIXTURES) + "/models/reward";
  write("in.jsonl", "{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": [1, 272]}\n");
  ScoreOptions o;
  o.model_dir = model;
  try {
    score_file(path("in.jsonl"), path("out.jsonl"), o);
    FAIL() << "an id outside the vocabulary was accepted";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("in.jsonl:2"), std::string::npos) << what;
    EXPECT_NE(what.find("input_ids[1]"), std::string::npos) << what;
  }
  EXPECT_FALSE(fs::exists(path("out.jsonl")));
  write("empty.jsonl", "{\"input_ids\": []}\n");
  EXPECT_THROW(score_file(path("empty.jsonl"), path("out.jsonl"), o), InputError);
  write("none.jsonl", "{\"reward\": 1}\n");
  EXPECT_THROW(score_file(path("none.jsonl"), path("out.jsonl"), o), InputError);
  // A causal LM is not a reward model.
  o.model_dir = std::string(POSTTRAIN_FIXTURES) + "/models/tied_plain";
  write("ok.jsonl", "{\"input_ids\": [1, 2]}\n");
  EXPECT_THROW(score_file(path("ok.jsonl"), path("out.jsonl"), o), UsageError);
}

TEST_F(RewardScore, FormsAgree) {
  // text, messages and prompt+completion rows score what their token ids score.
  const std::string model = tiny_rm();
  const auto tok = core::Tokenizer::load_dir(model);
  const auto text_ids = tok.encode("hello there", true);
  write("in.jsonl",
        json{{"text", "hello there"}}.dump() + "\n" + json{{"input_ids", text_ids}}.dump() + "\n" +
            R"({"prompt":"2+2?","completion":"4"})" "\n"
            R"({"prompt":"2+2?","response":"4"})" "\n"
            R"({"messages":[{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]})"
            "\n");
  ScoreOptions o;
  o.model_dir = model;
  o.batch_size = 2;
  score_file(path("in.jsonl"), path("out.jsonl"), o);
  const auto out = read_lines(path("out.jsonl"));
  ASSERT_EQ(out.size(), 5u);
  EXPECT_NEAR(out[0]["reward"].get<double>(), out[1]["reward"].get<double>(), 1e-6);
  EXPECT_NEAR(out[2]["reward"].get<double>(), out[3]["reward"].get<double>(), 1e-6);
  EXPECT_NEAR(out[2]["reward"].get<double>(), out[4]["reward"].get<double>(), 1e-6);
  EXPECT_GT(std::abs(out[0]["reward"].get<double>() - out[2]["reward"].get<double>()), 1e-6);
}

TEST_F(RewardScore, StoreRecordsAndReusesScores) {
  const std::string model = tiny_rm();
  const std::string db = path("s.db");
  datastore::Store::open(db);  // an empty store
  write("in.jsonl", R"({"prompt":"2+2?","completion":"4"})" "\n"
                    R"({"prompt":"2+2?","completion":"5"})" "\n"
                    R"({"input_ids":[1,2,3]})" "\n");
  ScoreOptions o;
  o.model_dir = model;
  o.store = db;
  auto s = score_file(path("in.jsonl"), path("out.jsonl"), o);
  EXPECT_EQ(s.computed, 3);
  EXPECT_EQ(s.stored, 2);  // the input_ids row has no response to key it by
  const auto first = read_lines(path("out.jsonl"));
  const int64_t rid = first[1]["response_id"].get<int64_t>();
  {
    auto store = datastore::Store::open(db);
    const auto scores = store.scores_of(rid, datastore::ScorerKind::kRewardModel);
    ASSERT_EQ(scores.size(), 1u);
    EXPECT_EQ(scores[0].first, scorer_key(model));
    EXPECT_DOUBLE_EQ(scores[0].second, first[1]["reward"].get<double>());
  }
  // Again, by response id and by content: reused, nothing recomputed or stored twice.
  write("again.jsonl", json{{"response_id", rid}}.dump() + "\n" +
                           R"({"prompt":"2+2?","completion":"4"})" "\n");
  s = score_file(path("again.jsonl"), path("out2.jsonl"), o);
  EXPECT_EQ(s.reused, 2);
  EXPECT_EQ(s.computed, 0);
  EXPECT_EQ(s.stored, 0);
  const auto second = read_lines(path("out2.jsonl"));
  EXPECT_DOUBLE_EQ(second[0]["reward"].get<double>(), first[1]["reward"].get<double>());
  // A bad row anywhere: an error, and the store is unchanged.
  const auto before = datastore::Store::open(db).stats().tables;
  write("bad.jsonl", R"({"prompt":"new prompt","completion":"x"})" "\n"
                     R"({"prompt":"p","completion":""})" "\n");
  EXPECT_THROW(score_file(path("bad.jsonl"), path("out3.jsonl"), o), InputError);
  write("bad2.jsonl", R"({"response_id": 999})" "\n");
  EXPECT_THROW(score_file(path("bad2.jsonl"), path("out3.jsonl"), o), InputError);
  EXPECT_EQ(datastore::Store::open(db).stats().tables, before);
}

}  // namespace
}  // namespace posttrain::reward
