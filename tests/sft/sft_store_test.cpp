// SFT data from the store: a store is built through the datastore API with selected samples of
// round 1 (short), unselected samples and samples of other rounds (long, so that any of them
// slipping in would be counted as dropped by `data.overlong: drop`), a round whose only selected
// dialogue has a malformed weight, and a round with no selections. The expectations are written
// here by hand: which samples round 1 selected and the chat each one must become (system prompt,
// prompt as a user turn, response as an assistant turn). Then `posttrain sft` trains on the store
// alone and on a JSONL file mixed with it, and bad store settings fail with one clear line.
#ifdef POSTTRAIN_SFT_WITH_STORE

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/files.h"
#include "core/checkpoint/safetensors.h"
#include "sft/sft_examples.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/metrics.h"
#include "datastore/store.h"
#include "sft/sft.h"
#include "tests/cli_run.h"

namespace fs = std::filesystem;

namespace posttrain::sft {
namespace {

using Json = nlohmann::json;

using Ran = testing::CliRun;
Ran run(const std::string& args) { return testing::run_cli(args); }

int64_t count_lines(const std::string& output) {
  return std::count(output.begin(), output.end(), '\n');
}

Json msg(const std::string& role, const std::string& content) {
  return Json{{"role", role}, {"content", content}};
}

// Longer than the runs' max_seq_len of 128 tokens (the built-in tokenizer is byte-level).
std::string long_text(const std::string& word) {
  std::string s;
  while (s.size() < 300) s += word + " ";
  return s;
}

class SftStore : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = (fs::temp_directory_path() / ("posttrain_sft_store_" + std::to_string(::getpid())))
                .string();
    posttrain::remove_tree(root_);
    fs::create_directories(root_);
    Ran r = run("init --preset tiny --seed 5 --output " + root_ + "/model");
    ASSERT_EQ(r.code, 0) << r.output;
    store_ = root_ + "/store.db";
    build_store();
  }
  static void TearDownTestSuite() { posttrain::remove_tree(root_); }

  static void build_store() {
    using datastore::SampleKind;
    auto store = datastore::Store::open(store_);
    const int64_t p_add = store.add_prompt("What is 2+3?", "math");
    const int64_t p_sub = store.add_prompt(Json::array({msg("user", "7-4?")}), "math");
    const int64_t p_mul = store.add_prompt("What is 9*2?", "math");
    auto response = [&](int64_t prompt, const Json& content, int round,
                        const std::string& system = "") {
      datastore::NewResponse r;
      r.prompt_id = prompt;
      r.content = content;
      r.round = round;
      r.system_prompt = system;
      return store.add_response(r);
    };
    auto dialogue = [&](const Json& messages, int round) {
      datastore::KeptDialogue d;
      d.messages = messages;
      d.round = round;
      d.source = "test";
      return store.add_dialogue(d).first;
    };
    // Round 1: four selected samples (one selected twice), an unselected response and dialogue.
    const int64_t r_add = response(p_add, "5", 1);
    const int64_t r_sub =
        response(p_sub, Json::array({msg("assistant", "3")}), 1, "Reply with digits.");
    const int64_t r_mul = response(p_mul, "18", 1);
    const int64_t d_chat =
        dialogue(Json::array({msg("user", "1+1?"),
                              Json{{"role", "assistant"}, {"content", "Hmm."}, {"weight", 0}},
                              msg("user", "Just the number."), msg("assistant", "2")}),
                 1);
    response(p_add, long_text("five"), 1);
    dialogue(Json::array({msg("user", "Tell a story."), msg("assistant", long_text("once"))}), 1);
    store.add_selection(1, SampleKind::kResponse, r_add, "correct");
    store.add_selection(1, SampleKind::kResponse, r_sub, "correct");
    store.add_selection(1, SampleKind::kDialogue, d_chat, "kept");
    store.add_selection(1, SampleKind::kResponse, r_mul, "correct");
    store.add_selection(1, SampleKind::kResponse, r_add, "again");
    // Round 2: long samples selected for round 2 only.
    store.add_selection(2, SampleKind::kResponse, response(p_mul, long_text("eighteen"), 2));
    store.add_selection(
        2, SampleKind::kDialogue,
        dialogue(Json::array({msg("user", "Count."), msg("assistant", long_text("one two"))}), 2));
    // Round 3: a selected dialogue whose weight the store keeps but SFT cannot read.
    bad_dialogue_ =
        dialogue(Json::array({msg("user", "3+3?"),
                              Json{{"role", "assistant"}, {"content", "6"}, {"weight", 2}}}),
                 3);
    store.add_selection(3, SampleKind::kDialogue, bad_dialogue_, "bad weight");
    // Round 4: a response, never selected.
    response(p_sub, "three", 4);
  }

  // The chats round 1 must yield, in selection order, written from what build_store stored.
  static std::vector<Json> round1_chats() {
    return {Json::array({msg("user", "What is 2+3?"), msg("assistant", "5")}),
            Json::array(
                {msg("system", "Reply with digits."), msg("user", "7-4?"), msg("assistant", "3")}),
            Json::array({msg("user", "1+1?"),
                         Json{{"role", "assistant"}, {"content", "Hmm."}, {"weight", 0}},
                         msg("user", "Just the number."), msg("assistant", "2")}),
            Json::array({msg("user", "What is 9*2?"), msg("assistant", "18")})};
  }

  // A config with data from `data` (merged over the defaults below) and small, fast settings.
  std::string write_config(const std::string& name, const Json& data, int64_t max_steps = 8) {
    Json c = {{"model", {{"path", root_ + "/model"}}},
              {"data", {{"max_seq_len", 128}, {"overlong", "drop"}}},
              {"optimizer", {{"lr", 0.01}}},
              {"schedule", {{"warmup_steps", 1}, {"decay", "constant"}}},
              {"training", {{"max_steps", max_steps}, {"micro_batch_size", 2}, {"threads", 1}}},
              {"output", {{"dir", root_ + "/" + name}}}};
    for (auto it = data.begin(); it != data.end(); ++it) c["data"][it.key()] = it.value();
    const std::string path = root_ + "/" + name + ".json";
    std::ofstream(path) << c.dump(2);
    return path;
  }

  static std::string root_;
  static std::string store_;
  static int64_t bad_dialogue_;
};
std::string SftStore::root_;
std::string SftStore::store_;
int64_t SftStore::bad_dialogue_ = 0;

Json first_line(const std::string& output) {
  return Json::parse(output.substr(0, output.find('\n')));
}

Json last_line(const std::string& output) {
  std::string s = output;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return Json::parse(s.substr(s.rfind('\n') + 1));
}

TEST_F(SftStore, ReadsExactlyTheRoundsSelectedSamplesAsChats) {
  const core::Tokenizer tok = core::Tokenizer::load_dir(root_ + "/model");
  SftDataOptions o;
  o.store = store_;
  o.store_round = 1;
  o.max_seq_len = 128;
  o.overlong = core::OverlongPolicy::kDrop;
  const core::Mixture mix = build_sft_data(o, tok, tok.chat_format(), 0);
  ASSERT_EQ(mix.sources.size(), 1u);
  EXPECT_NE(mix.sources[0].name.find(store_), std::string::npos) << mix.sources[0].name;
  EXPECT_EQ(mix.sources[0].read, 4);
  EXPECT_EQ(mix.sources[0].dropped_long, 0);
  EXPECT_TRUE(mix.eval.empty());

  std::vector<std::vector<int64_t>> want, got;
  for (const Json& chat : round1_chats()) {
    const auto rendered =
        core::render_chat(tok, core::parse_messages(chat, Location{}), tok.chat_format());
    want.push_back(rendered.ids);
  }
  for (const auto& ex : mix.train) {
    got.push_back(ex.ids);
    EXPECT_GT(ex.num_targets(), 0);
  }
  std::sort(want.begin(), want.end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, want);
}

TEST_F(SftStore, TrainsOnTheStoreRoundAlone) {
  const std::string cfg = write_config("store_only", {{"store", store_}, {"store_round", 1}});
  Ran r = run("sft --config " + cfg);
  ASSERT_EQ(r.code, 0) << r.output;
  const Json data = first_line(r.output);
  ASSERT_EQ(data["event"], "data") << r.output;
  ASSERT_EQ(data["sources"].size(), 1u) << r.output;
  const Json& src = data["sources"][0];
  EXPECT_NE(src["source"].get<std::string>().find(store_), std::string::npos) << r.output;
  // Four selected samples; none of the long unselected or round-2 samples was read (they would
  // have been dropped as too long) and the one selected twice counts once.
  EXPECT_EQ(src["read"], 4) << r.output;
  EXPECT_EQ(src["dropped_long"], 0) << r.output;
  EXPECT_EQ(src["train"], 4) << r.output;
  EXPECT_EQ(data["train_examples"], 4) << r.output;

  const Json done = last_line(r.output);
  EXPECT_EQ(done["event"], "done") << r.output;
  EXPECT_EQ(done["steps"], 8) << r.output;
  ASSERT_TRUE(done.contains("loss")) << r.output;
  EXPECT_TRUE(std::isfinite(done["loss"].get<double>())) << r.output;

  const auto metrics = core::read_metrics(root_ + "/store_only/metrics.jsonl");
  std::vector<double> losses;
  for (const auto& m : metrics) {
    // Step lines (the final event line repeats the last loss).
    if (m.contains("loss") && !core::is_event_line(m)) losses.push_back(m["loss"].get<double>());
  }
  ASSERT_EQ(losses.size(), 8u);
  for (double l : losses) EXPECT_TRUE(std::isfinite(l));
  // Eight steps over four short chats: the model memorises them.
  EXPECT_LT(losses[6] + losses[7], losses[0] + losses[1]) << r.output;

  core::SafetensorsFile before(root_ + "/model/model.safetensors");
  core::SafetensorsFile after(root_ + "/store_only/model.safetensors");
  ASSERT_EQ(before.names(), after.names());
  double changed = 0;
  for (const auto& name : before.names()) {
    changed = std::max(changed, (before.read(name) - after.read(name)).abs().max().item<double>());
  }
  EXPECT_GT(changed, 1e-4);
}

TEST_F(SftStore, MixesAJsonlSourceWithTheStore) {
  const std::string jsonl = std::string(POSTTRAIN_FIXTURES) + "/../../sft/examples/tiny_sft.jsonl";
  int64_t jsonl_rows = 0;
  {
    std::ifstream in(jsonl);
    std::string line;
    while (std::getline(in, line)) jsonl_rows += !line.empty();
  }
  // Store weight 2: two copies of each of the four selected samples.
  const std::string cfg = write_config("mixed",
                                       {{"sources", {jsonl}},
                                        {"store", store_},
                                        {"store_round", 1},
                                        {"store_weight", 2.0},
                                        {"max_seq_len", 512}},
                                       2);
  Ran r = run("sft --config " + cfg);
  ASSERT_EQ(r.code, 0) << r.output;
  const Json data = first_line(r.output);
  ASSERT_EQ(data["sources"].size(), 2u) << r.output;
  EXPECT_EQ(data["sources"][0]["source"], jsonl);
  EXPECT_EQ(data["sources"][0]["read"], jsonl_rows);
  EXPECT_EQ(data["sources"][0]["train"], jsonl_rows);
  EXPECT_NE(data["sources"][1]["source"].get<std::string>().find(store_), std::string::npos);
  EXPECT_EQ(data["sources"][1]["read"], 4);
  EXPECT_EQ(data["sources"][1]["train"], 8);
  EXPECT_EQ(data["train_examples"], jsonl_rows + 8);
  const Json done = last_line(r.output);
  EXPECT_EQ(done["steps"], 2) << r.output;
  EXPECT_TRUE(std::isfinite(done["loss"].get<double>())) << r.output;
}

TEST_F(SftStore, StoreAndRoundKeysComeTogether) {
  Ran r = run("sft --config " + write_config("no_round", {{"store", store_}}));
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(count_lines(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("'data.store_round'"), std::string::npos) << r.output;

  const std::string jsonl = std::string(POSTTRAIN_FIXTURES) + "/../../sft/examples/tiny_sft.jsonl";
  r = run("sft --config " + write_config("no_store", {{"sources", {jsonl}}, {"store_round", 1}}));
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(count_lines(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("'data.store_round'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("data.store, which is not set"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(root_ + "/no_store/metrics.jsonl"));
}

TEST_F(SftStore, RoundWithoutSelectionsNamesStoreAndRound) {
  for (int round : {4, 7}) {
    Ran r = run("sft --config " + write_config("empty_round", {{"store", store_}}) +
                " --set data.store_round=" + std::to_string(round));
    EXPECT_NE(r.code, 0);
    EXPECT_EQ(count_lines(r.output), 1) << r.output;
    EXPECT_NE(r.output.find(store_), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("round " + std::to_string(round)), std::string::npos) << r.output;
  }
}

TEST_F(SftStore, MissingStoreIsAnErrorAndIsNotCreated) {
  const std::string absent = root_ + "/absent.db";
  Ran r = run("sft --config " + write_config("absent", {{"store", absent}, {"store_round", 1}}));
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(count_lines(r.output), 1) << r.output;
  EXPECT_NE(r.output.find("data.store"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(absent), std::string::npos) << r.output;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    EXPECT_FALSE(fs::exists(absent + suffix)) << suffix;
  }
}

TEST_F(SftStore, MalformedSelectedSampleNamesStoreAndSample) {
  Ran r = run("sft --config " + write_config("bad", {{"store", store_}, {"store_round", 3}}));
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(count_lines(r.output), 1) << r.output;
  EXPECT_NE(r.output.find(store_), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("dialogue " + std::to_string(bad_dialogue_)), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("weight"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace posttrain::sft

#endif  // POSTTRAIN_SFT_WITH_STORE
