// `posttrain sample` end to end on tiny random models (CPU, a handful of prompts, K = 4, a few
// tokens): what the store records for every candidate, selections and pairs recomputed by hand
// from the candidates' scores, math verdicts recomputed with math_check against the known
// answers, rewards equal to `posttrain reward score` on the same text, `posttrain sft` training
// on the round's selections, and bad input failing with one line before anything is written.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "core/generate/sampler.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"
#include "synthetic/math_check.h"
#include "synthetic/rational.h"
#include "tests/rejection_sampling/sample_test_util.h"

namespace fs = std::filesystem;

namespace posttrain::rejection_sampling {
namespace {

using testing::Json;
using testing::query;
using testing::read_jsonl;
using Ran = posttrain::testing::CliRun;
Ran run(const std::string& args) { return posttrain::testing::run_cli(args); }

const std::vector<std::string> kSystemPrompts = {"Be brief.", "Think step by step."};

class SampleCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ =
        (fs::temp_directory_path() / ("posttrain_sample_" + std::to_string(::getpid()))).string();
    posttrain::remove_tree(root_);
    fs::create_directories(root_);
    Ran r = run("init --preset tiny --seed 5 --output " + root_ + "/policy");
    ASSERT_EQ(r.code, 0) << r.output;
    r = run("init --preset tiny --seed 6 --reward-model --output " + root_ + "/rm");
    ASSERT_EQ(r.code, 0) << r.output;
    prompts_ = {{{"id", "add"}, {"prompt", "What is 2 + 3?"}, {"kind", "math"}, {"answer", "5"}},
                {{"id", "mul"}, {"prompt", "What is 4 * 6?"}, {"kind", "math"}, {"answer", 24}},
                {{"id", "hi"}, {"prompt", "Say hi."}},
                {{"id", "color"},
                 {"messages", Json::array({{{"role", "user"}, {"content", "Name a color."}}})}},
                {{"id", "sys"},
                 {"prompt", Json::array({{{"role", "system"}, {"content", "Answer in French."}},
                                         {{"role", "user"}, {"content", "Name a fruit."}}})}}};
    testing::write_jsonl(root_ + "/prompts.jsonl", prompts_);
    // One run shared by the tests that read its results.
    r = run("sample --config " + config("main"));
    ASSERT_EQ(r.code, 0) << r.output;
    main_output_ = r.output;
  }
  static void TearDownTestSuite() { posttrain::remove_tree(root_); }

  // A config writing to ROOT/NAME.db and ROOT/NAME/; `patch` is merged per section (a null
  // section is dropped).
  static std::string config(const std::string& name, const Json& patch = Json::object()) {
    Json c = {
        {"model", {{"path", root_ + "/policy"}}},
        {"reward_model", {{"path", root_ + "/rm"}, {"batch_size", 3}}},
        {"prompts", {{"path", root_ + "/prompts.jsonl"}}},
        {"sampling",
         {{"samples", 4}, {"max_new_tokens", 8}, {"seed", 7}, {"system_prompts", kSystemPrompts}}},
        {"ranking", {{"order", {"verified", "reward"}}}},
        {"output",
         {{"store", root_ + "/" + name + ".db"}, {"round", 1}, {"dir", root_ + "/" + name}}},
        {"engine", {{"kv_cache_mb", 16}}}};
    for (auto it = patch.begin(); it != patch.end(); ++it) {
      if (it.value().is_null()) {  // null drops the section
        c.erase(it.key());
        continue;
      }
      for (auto kt = it.value().begin(); kt != it.value().end(); ++kt)
        c[it.key()][kt.key()] = kt.value();
    }
    const std::string path = root_ + "/" + name + ".json";
    std::ofstream(path) << c.dump(2);
    return path;
  }

  static std::string root_, main_output_;
  static std::vector<Json> prompts_;
};
std::string SampleCli::root_, SampleCli::main_output_;
std::vector<Json> SampleCli::prompts_;

// The content a prompt row stores: its "prompt" or its "messages".
Json content_of(const Json& row) {
  return row.contains("prompt") ? row["prompt"] : row["messages"];
}

TEST_F(SampleCli, RecordsEveryCandidateWithSeedSamplingAndCheckpoint) {
  const std::string db = root_ + "/main.db";
  const auto lines = read_jsonl(root_ + "/main/candidates.jsonl");
  ASSERT_EQ(lines.size(), prompts_.size() * 4);
  const auto ckpts = query(db, "SELECT id, path FROM checkpoints");
  ASSERT_EQ(ckpts.size(), 1u);
  EXPECT_EQ(ckpts[0]["path"], fs::canonical(root_ + "/policy").string());
  const std::string rm = fs::canonical(root_ + "/rm").string();
  int64_t stored = 0;
  for (const auto& l : lines) {
    const int64_t position = l["position"];
    const Json& row = prompts_.at(static_cast<size_t>(position));
    EXPECT_EQ(l["id"], row["id"]);
    // Seeds follow the documented derivation, so a resumed run draws the same samples.
    const uint64_t base = core::generate::sample_seed(7, position);
    EXPECT_EQ(l["seed"].get<uint64_t>(),
              core::generate::sample_seed(base, l["sample"].get<int64_t>()));
    // A drawn system prompt only where the prompt has none of its own.
    if (row["id"] == "sys") {
      EXPECT_EQ(l["system_prompt"], "");
    } else {
      EXPECT_TRUE(l["system_prompt"] == kSystemPrompts[0] ||
                  l["system_prompt"] == kSystemPrompts[1]);
    }
    if (l["text"] == "") {
      EXPECT_EQ(l["response_id"], 0);
      continue;
    }
    ++stored;
    const auto resp = query(db, "SELECT * FROM responses WHERE id = " + l["response_id"].dump());
    ASSERT_EQ(resp.size(), 1u);
    EXPECT_EQ(resp[0]["checkpoint_id"], ckpts[0]["id"]);
    EXPECT_EQ(resp[0]["round"], 1);
    EXPECT_EQ(resp[0]["token_count"], l["tokens"]);
    const Json& sp = resp[0]["system_prompt"];
    EXPECT_EQ(sp.is_null() ? Json("") : sp, l["system_prompt"]);
    EXPECT_EQ(Json::parse(resp[0]["body"].get<std::string>()), l["text"]);
    const Json sampling = Json::parse(resp[0]["sampling"].get<std::string>());
    EXPECT_EQ(sampling["seed"], l["seed"]);
    EXPECT_EQ(sampling["temperature"], 1.0);
    EXPECT_EQ(sampling["top_p"], 1.0);
    EXPECT_EQ(sampling["max_new_tokens"], 8);
    EXPECT_EQ(sampling["samples"], 4);
    const auto prompt =
        query(db, "SELECT body FROM prompts WHERE id = " + resp[0]["prompt_id"].dump());
    ASSERT_EQ(prompt.size(), 1u);
    EXPECT_EQ(Json::parse(prompt[0]["body"].get<std::string>()), content_of(row));
    // The reward model's score and, for math, the verifier's.
    const auto rs =
        query(db, "SELECT value FROM scores WHERE scorer_kind = 'reward_model' AND scorer = '" +
                      rm + "' AND response_id = " + l["response_id"].dump());
    ASSERT_EQ(rs.size(), 1u);
    EXPECT_DOUBLE_EQ(rs[0]["value"].get<double>(), l["reward"].get<double>());
    const auto vs = query(db,
                          "SELECT value, scorer FROM scores WHERE scorer_kind = 'verifier' AND "
                          "response_id = " +
                              l["response_id"].dump());
    if (row.value("kind", "") == "math") {
      ASSERT_EQ(vs.size(), 1u);
      EXPECT_EQ(vs[0]["scorer"], "verify:math");
      // Independently: math_check with the row's known answer.
      const auto answer = synthetic::parse_number(
          row["answer"].is_string() ? row["answer"].get<std::string>() : row["answer"].dump());
      const bool passed = synthetic::check_math(l["text"].get<std::string>(), *answer).passed;
      EXPECT_EQ(l["verified"], passed);
      EXPECT_EQ(vs[0]["value"].get<double>(), passed ? 1.0 : 0.0);
    } else {
      EXPECT_TRUE(vs.empty());
      EXPECT_FALSE(l.contains("verified"));
    }
  }
  EXPECT_GT(stored, 0);
  const Json summary = Json::parse(std::ifstream(root_ + "/main/summary.json"));
  EXPECT_EQ(summary["prompts"], 5);
  EXPECT_EQ(summary["samples"], 20);
  EXPECT_NE(main_output_.find("sample: 5 prompts"), std::string::npos) << main_output_;
}

// Selections and pairs recomputed from the candidates' lines: verified first, then reward,
// ties to the earlier sample; math prompts are selected only when their best passed.
TEST_F(SampleCli, BestIsSelectedAndBestVersusWorstIsAPair) {
  const std::string db = root_ + "/main.db";
  const auto lines = read_jsonl(root_ + "/main/candidates.jsonl");
  std::map<int64_t, std::vector<Json>> by_prompt;
  for (const auto& l : lines) {
    if (l["text"] != "") by_prompt[l["prompt_id"].get<int64_t>()].push_back(l);
  }
  std::set<int64_t> want_selected;
  std::set<std::pair<int64_t, int64_t>> want_pairs;
  for (const auto& [pid, cands] : by_prompt) {
    auto better = [](const Json& a, const Json& b) {  // a strictly above b
      const int va = a.value("verified", false), vb = b.value("verified", false);
      if (va != vb) return va > vb;
      return a["reward"].get<double>() > b["reward"].get<double>();
    };
    size_t best = 0, worst = 0;
    for (size_t i = 1; i < cands.size(); ++i) {
      if (better(cands[i], cands[best])) best = i;
      if (!better(cands[i], cands[worst])) worst = i;  // the last of the lowest
    }
    const bool math = cands[best]["kind"] == "math";
    if (!math || cands[best]["verified"] == true) {
      want_selected.insert(cands[best]["response_id"].get<int64_t>());
    }
    const int64_t b = cands[best]["response_id"], w = cands[worst]["response_id"];
    if (better(cands[best], cands[worst]) && b != w) want_pairs.insert({b, w});
  }
  std::set<int64_t> selected;
  for (const auto& s : query(db, "SELECT response_id, reason FROM selections WHERE round = 1")) {
    EXPECT_EQ(s["reason"], "rejection_sampling");
    selected.insert(s["response_id"].get<int64_t>());
  }
  EXPECT_EQ(selected, want_selected);
  EXPECT_GE(selected.size(), 3u);  // the three prompts without a verifier always select
  std::set<std::pair<int64_t, int64_t>> pairs;
  for (const auto& p : query(db, "SELECT * FROM preference_pairs")) {
    EXPECT_EQ(p["source"], "rejection_sampling");
    EXPECT_EQ(p["round"], 1);
    EXPECT_TRUE(p["strength"].is_null());
    pairs.insert({p["chosen_id"].get<int64_t>(), p["rejected_id"].get<int64_t>()});
  }
  EXPECT_EQ(pairs, want_pairs);
  EXPECT_FALSE(pairs.empty());  // random rewards of different texts differ
}

// The rewards equal `posttrain reward score` on prompt + completion rows of the same text.
TEST_F(SampleCli, RewardsEqualRewardScore) {
  const auto lines = read_jsonl(root_ + "/main/candidates.jsonl");
  std::vector<Json> rows;
  std::vector<double> want;
  for (const auto& l : lines) {
    if (l["text"] == "") continue;
    Json prompt = content_of(prompts_.at(l["position"].get<size_t>()));
    const std::string sys = l["system_prompt"];
    if (!sys.empty()) {
      Json msgs = Json::array({{{"role", "system"}, {"content", sys}}});
      if (prompt.is_string()) {
        msgs.push_back({{"role", "user"}, {"content", prompt}});
      } else {
        for (const auto& m : prompt) msgs.push_back(m);
      }
      prompt = msgs;
    }
    rows.push_back({{"prompt", prompt}, {"completion", l["text"]}});
    want.push_back(l["reward"]);
  }
  ASSERT_FALSE(rows.empty());
  testing::write_jsonl(root_ + "/rm_in.jsonl", rows);
  Ran r = run("reward score --model " + root_ + "/rm --input " + root_ + "/rm_in.jsonl --output " +
              root_ + "/rm_out.jsonl");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto got = read_jsonl(root_ + "/rm_out.jsonl");
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i]["reward"].get<double>(), want[i], 1e-5) << rows[i].dump();
  }
}

// SFT on the round's selections renders each as [system] + prompt + response, whose prefix is
// exactly the prompt the policy sampled from.
TEST_F(SampleCli, SftTrainsOnTheSelectionsAndSeesThePolicysPrompt) {
  const auto tok = core::Tokenizer::load_dir(root_ + "/policy");
  for (const auto& l : read_jsonl(root_ + "/main/candidates.jsonl")) {
    if (l["selected"] != true) continue;
    std::vector<core::ChatMessage> msgs;
    const std::string sys = l["system_prompt"];
    if (!sys.empty()) msgs.push_back({"system", sys, -1});
    const Json content = content_of(prompts_.at(l["position"].get<size_t>()));
    if (content.is_string()) {
      msgs.push_back({"user", content.get<std::string>(), -1});
    } else {
      for (const auto& m : content) msgs.push_back({m["role"], m["content"], -1});
    }
    const auto prompt_ids = core::render_chat(tok, msgs, tok.chat_format(), true).ids;
    EXPECT_EQ(static_cast<int64_t>(prompt_ids.size()), l["prompt_tokens"].get<int64_t>());
    msgs.push_back({"assistant", l["text"].get<std::string>(), -1});
    const auto full = core::render_chat(tok, msgs, tok.chat_format()).ids;
    ASSERT_GT(full.size(), prompt_ids.size());
    EXPECT_TRUE(std::equal(prompt_ids.begin(), prompt_ids.end(), full.begin()));
  }
  Json c = {{"model", {{"path", root_ + "/policy"}}},
            {"data", {{"store", root_ + "/main.db"}, {"store_round", 1}, {"max_seq_len", 128}}},
            {"optimizer", {{"lr", 0.01}}},
            {"schedule", {{"warmup_steps", 1}, {"decay", "constant"}}},
            {"training", {{"max_steps", 3}, {"micro_batch_size", 2}, {"threads", 1}}},
            {"output", {{"dir", root_ + "/sft"}}}};
  std::ofstream(root_ + "/sft.json") << c.dump(2);
  Ran r = run("sft --config " + root_ + "/sft.json");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto first = Json::parse(r.output.substr(0, r.output.find('\n')));
  ASSERT_EQ(first["event"], "data") << r.output;
  const auto selections = query(root_ + "/main.db", "SELECT count(*) AS n FROM selections");
  EXPECT_EQ(first["sources"][0]["read"], selections[0]["n"]) << r.output;
  EXPECT_NE(r.output.find("\"steps\":3"), std::string::npos) << r.output;
}

TEST_F(SampleCli, ABadPromptFailsWithOneLineAndWritesNothing) {
  testing::write_jsonl(root_ + "/bad.jsonl",
                       {{{"prompt", "1+1?"}, {"kind", "math"}, {"answer", "2"}},
                        {{"prompt", "2+2?"}, {"kind", "math"}, {"answer", "four"}}});
  Ran r = run("sample --config " + config("bad", {{"prompts", {{"path", root_ + "/bad.jsonl"}}}}));
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_NE(r.output.find("bad.jsonl:2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("answer"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(root_ + "/bad.db"));

  r = run("sample --config " + config("bad2", {{"ranking", {{"order", {"rewards"}}}}}));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("ranking.order"), std::string::npos) << r.output;
  r = run("sample --config " + config("bad3", {{"reward_model", nullptr}}));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("reward_model.path is not set"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace posttrain::rejection_sampling
