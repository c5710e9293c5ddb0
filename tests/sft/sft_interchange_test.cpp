// One command's output into the next, with the real commands:
//   synth --candidates --output  ->  sft   (kept dialogues train with their per-message weights,
//                                           lines that were not kept are skipped and counted);
//   every row shape sft reads    ->  tokenize shows the mask SFT trains on;
//   a run whose length limit cuts most of a source says so on stderr, or stops when asked.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/files.h"
#include "core/logprobs.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"
#include "sft/sft_examples.h"
#include "tests/cli_run.h"

namespace fs = std::filesystem;

namespace posttrain::sft {
namespace {

using Json = nlohmann::json;
using Ran = testing::CliRun;
Ran run(const std::string& args) { return testing::run_cli(args); }

std::vector<Json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<Json> rows;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) rows.push_back(Json::parse(line));
  }
  return rows;
}

// Without leading and trailing ASCII whitespace, as the chat templates render content.
std::string strip(const std::string& s) {
  const char* ws = " \t\n\r";
  const size_t b = s.find_first_not_of(ws);
  return b == std::string::npos ? "" : s.substr(b, s.find_last_not_of(ws) - b + 1);
}

Json first_line(const std::string& output) {
  return Json::parse(output.substr(0, output.find('\n')));
}

class SftInterchange : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ =
        (fs::temp_directory_path() / ("posttrain_sft_ich_" + std::to_string(::getpid()))).string();
    posttrain::remove_tree(root_);
    fs::create_directories(root_);
    Ran r = run("init --preset tiny --seed 5 --output " + root_ + "/model");
    ASSERT_EQ(r.code, 0) << r.output;
    // Three math problems; their candidates: problem 0 a wrong answer then its reference
    // solution (fixed by feedback), problem 1 its reference solution (first try), problem 2 two
    // wrong answers (not kept).
    r = run("synth math --count 3 --seed 3 --out " + root_ + "/problems.jsonl");
    ASSERT_EQ(r.code, 0) << r.output;
    problems_ = read_jsonl(root_ + "/problems.jsonl");
    ASSERT_EQ(problems_.size(), 3u);
    {
      std::ofstream cand(root_ + "/cand.jsonl");
      const Json wrong = "Answer: -999999", wrong2 = "Answer: -888888";
      const Json attempts[3] = {{wrong, problems_[0]["reference_solution"]},
                                {problems_[1]["reference_solution"]},
                                {wrong, wrong2}};
      for (int i = 0; i < 3; ++i) {
        cand << Json{{"id", problems_[i]["id"]}, {"attempts", attempts[i]}}.dump() << "\n";
      }
    }
    synth_out_ = root_ + "/synth_out.jsonl";
    r = run("synth math --count 3 --seed 3 --max-attempts 2 --candidates " + root_ +
            "/cand.jsonl --output " + synth_out_);
    ASSERT_EQ(r.code, 0) << r.output;
  }
  static void TearDownTestSuite() { posttrain::remove_tree(root_); }

  static std::string sft_config(const std::string& name, const std::string& source,
                                int64_t max_seq_len) {
    Json c = {{"model", {{"path", root_ + "/model"}}},
              {"data", {{"sources", {source}}, {"max_seq_len", max_seq_len}}},
              {"optimizer", {{"lr", 0.01}}},
              {"schedule", {{"warmup_steps", 0}, {"decay", "constant"}}},
              {"training", {{"max_steps", 1}, {"micro_batch_size", 2}, {"threads", 1}}},
              {"output", {{"dir", root_ + "/" + name}}}};
    const std::string path = root_ + "/" + name + ".json";
    std::ofstream(path) << c.dump(2);
    return path;
  }

  static std::string root_, synth_out_;
  static std::vector<Json> problems_;
};
std::string SftInterchange::root_, SftInterchange::synth_out_;
std::vector<Json> SftInterchange::problems_;

TEST_F(SftInterchange, SynthOutputFileTrainsAsItIs) {
  const auto lines = read_jsonl(synth_out_);
  ASSERT_EQ(lines.size(), 3u);
  // What synth wrote: the kept lines hold `messages` beside the problem's `prompt`.
  EXPECT_TRUE(lines[0]["kept"].get<bool>());
  EXPECT_TRUE(lines[1]["kept"].get<bool>());
  EXPECT_FALSE(lines[2]["kept"].get<bool>());
  ASSERT_TRUE(lines[0].contains("messages") && lines[0].contains("prompt"));
  EXPECT_FALSE(lines[2].contains("messages"));

  Ran r = run("sft --config " + sft_config("sft_synth", synth_out_, 1024));
  ASSERT_EQ(r.code, 0) << r.output;
  const Json data = first_line(r.output);
  ASSERT_EQ(data["event"], "data") << r.output;
  const Json& src = data["sources"][0];
  EXPECT_EQ(src["read"], 3) << r.output;
  EXPECT_EQ(src["skipped_not_kept"], 1) << r.output;
  EXPECT_EQ(src["truncated"], 0) << r.output;
  EXPECT_EQ(data["train_examples"], 2) << r.output;
  EXPECT_EQ(r.output.find("warning"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(root_ + "/sft_synth/model.safetensors"));

  // A file of failed lines only: nothing to train on, said in words.
  { std::ofstream(root_ + "/failed_only.jsonl") << lines[2].dump() << "\n"; }
  r = run("sft --config " + sft_config("sft_failed", root_ + "/failed_only.jsonl", 1024));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("skipping 1 synth lines that were not kept"), std::string::npos)
      << r.output;
}

// tokenize on every row shape SFT reads shows exactly the mask SFT trains on.
TEST_F(SftInterchange, TokenizeShowsSftsTargetMaskForEveryRowShape) {
  const Json messages = Json::parse(R"({"messages": [{"role": "user", "content": "hi"},
      {"role": "assistant", "content": "no", "weight": 0}, {"role": "user", "content": "again"},
      {"role": "assistant", "content": "yes"}]})");
  const Json strings = {{"prompt", "2+2?"}, {"completion", "4 apples"}};
  const Json listed = Json::parse(R"({"prompt": [{"role": "system", "content": "be brief"},
      {"role": "user", "content": "hello"}], "completion": "hey"})");
  const auto synth = read_jsonl(synth_out_);  // kept (fixed by feedback), kept, not kept
  const core::Tokenizer tok = core::Tokenizer::byte_level();

  for (const bool as_text : {false, true}) {
    const std::string mode = as_text ? "text" : "chat";
    SCOPED_TRACE(mode);
    // Each row with the text its mask must cover, derived by hand: the trained assistant
    // content (stripped, as the template does) and its end token; raw text trains on the
    // completion and the tokenizer's first end-of-sequence token. "" = SFT skips the row.
    std::vector<std::pair<Json, std::string>> rows = {
        {messages, "yes<|eot_id|>"},  // the weight-0 turn "no" does not train
        {strings,
         as_text ? "4 apples" + tok.decode({tok.eos_ids().front()}, false) : "4 apples<|eot_id|>"},
        // Synth lines: only the passing attempt trains, not the failed one before it.
        {synth[0], strip(problems_[0]["reference_solution"].get<std::string>()) + "<|eot_id|>"},
        {synth[1], strip(problems_[1]["reference_solution"].get<std::string>()) + "<|eot_id|>"},
        {synth[2], ""}};
    if (!as_text) rows.push_back({listed, "hey<|eot_id|>"});  // raw text takes strings only
    const std::string in = root_ + "/rows_" + mode + ".jsonl";
    const std::string out = root_ + "/rows_tok_" + mode + ".jsonl";
    {
      std::ofstream f(in);
      for (const auto& row : rows) f << row.first.dump() << "\n";
    }
    Ran r = run("tokenize --tokenizer byte-level --prompt-completion " + mode + " --input " + in +
                " --output " + out);
    ASSERT_EQ(r.code, 0) << r.output;
    const auto got = read_jsonl(out);
    const auto want = read_sft_examples(in, as_text);
    ASSERT_EQ(got.size(), rows.size());
    ASSERT_EQ(want.size(), rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      SCOPED_TRACE(i);
      if (rows[i].second.empty()) {  // SFT skips it; tokenize copies it unchanged
        EXPECT_TRUE(want[i].not_kept);
        EXPECT_EQ(got[i], rows[i].first);
        continue;
      }
      const auto ids = got[i]["input_ids"].get<std::vector<int64_t>>();
      const auto mask = got[i]["sft_target_mask"].get<std::vector<int>>();
      ASSERT_EQ(ids.size(), mask.size());
      // What SFT trains on: position t predicts ids[t + 1] exactly where the mask marks t + 1.
      const core::TokenizedExample sft =
          tokenize_sft_example(tok, core::ChatFormat::kLlama3, want[i]);
      ASSERT_EQ(sft.ids, ids);
      EXPECT_EQ(mask[0], 0);
      for (size_t t = 0; t + 1 < ids.size(); ++t) {
        EXPECT_EQ(sft.targets[t], mask[t + 1] ? ids[t + 1] : core::kIgnoreTarget) << t;
      }
      std::vector<int64_t> masked;
      for (size_t t = 0; t < ids.size(); ++t) {
        if (mask[t]) masked.push_back(ids[t]);
      }
      EXPECT_EQ(tok.decode(masked, false), rows[i].second);
    }
  }
}

TEST_F(SftInterchange, ManyTruncatedOrDroppedExamplesAreSaidAndCanStopTheRun) {
  // 7 examples: 6 of about 300 tokens, 1 short; max_seq_len 64 with overlong=drop drops the 6.
  const std::string path = root_ + "/mostly_long.jsonl";
  {
    std::ofstream f(path);
    for (int i = 0; i < 6; ++i) {
      f << Json{{"prompt", "tell me a long story"}, {"completion", std::string(300, 'a' + i)}}
               .dump()
        << "\n";
    }
    f << Json{{"prompt", "hi"}, {"completion", "hello"}}.dump() << "\n";
  }
  const std::string cfg = sft_config("sft_long", path, 64);
  Ran r = run("sft --config " + cfg + " --set data.overlong=drop");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(first_line(r.output)["sources"][0]["dropped_long"], 6) << r.output;
  // 6 / 7 = 0.857 -> 86%, over the default 0.1.
  EXPECT_NE(r.output.find("warning: sft: data.max_seq_len cut 6 of 7 examples of " + path +
                          " (86%: 0 truncated, 6 dropped)"),
            std::string::npos)
      << r.output;

  // Truncated counts too (the default policy): the same words, and an error when asked for.
  posttrain::remove_tree(root_ + "/sft_long");
  r = run("sft --config " + cfg + " --set data.on_many_dropped=error");
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("cut 6 of 7 examples of " + path + " (86%: 6 truncated, 0 dropped)"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("data.on_many_dropped = error stops the run"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(root_ + "/sft_long/model.safetensors"));

  // A fraction above the share: silent, and trains.
  r = run("sft --config " + cfg +
          " --set data.on_many_dropped=error --set data.max_dropped_fraction=0.9");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output.find("cut 6 of 7"), std::string::npos) << r.output;
  r = run("sft --config " + cfg + " --set data.max_dropped_fraction=1.5");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("data.max_dropped_fraction"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace posttrain::sft
