// `synth --model`: a fresh tiny model writes the attempts through the decode engine. Checked
// against independent references: `verify` on the same candidates gives the same verdicts,
// `generate` on the self-correction dialogue (problem, attempt 1, the checker's feedback as a
// user turn) with the recorded seed writes exactly attempt 2, reruns are identical, and the
// store holds every attempt as a response of the policy checkpoint with its sampling settings.
// Skipped only where the binary was built without LibTorch (no `generate` command).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/files.h"
#include "datastore/store.h"
#include "synthetic/self_correct.h"
#include "tests/cli_run.h"

namespace posttrain::synthetic {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> rows;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) rows.push_back(json::parse(line));
  }
  return rows;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_jsonl(const std::string& path, const std::vector<json>& rows) {
  std::ofstream out(path);
  for (const auto& r : rows) out << r.dump() << "\n";
}

class SynthModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    has_torch_ = testing::run_cli("--help").output.find("  generate") != std::string::npos;
    if (!has_torch_) return;
    root_ = (fs::temp_directory_path() / ("posttrain_synth_model_" + std::to_string(::getpid())))
                .string();
    posttrain::remove_tree(root_);
    fs::create_directories(root_);
    auto r = testing::run_cli("init --preset tiny --seed 5 --output " + root_ + "/model");
    ASSERT_EQ(r.code, 0) << r.output;
  }
  static void TearDownTestSuite() {
    if (!root_.empty()) posttrain::remove_tree(root_);
  }
  void SetUp() override {
    if (!has_torch_) GTEST_SKIP() << "posttrain built without LibTorch: no decode engine";
  }

  // synth math on 3 problems of seed 3, two attempts each at most, short samples.
  static testing::CliRun synth(const std::string& out, const std::string& extra = "") {
    return testing::run_cli("synth math --count 3 --seed 3 --max-attempts 2 --model " + root_ +
                            "/model --max-new-tokens 24 --out " + root_ + "/" + out + " " + extra);
  }

  static inline bool has_torch_ = false;
  static inline std::string root_;
};

TEST_F(SynthModel, RecordsEveryAttemptAndReachesTheFeedbackTurn) {
  auto r = synth("a.jsonl");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto rows = read_jsonl(root_ + "/a.jsonl");
  ASSERT_EQ(rows.size(), 3u);
  int second_attempts = 0;
  for (const auto& row : rows) {
    const auto& attempts = row["attempts"];
    ASSERT_GE(attempts.size(), 1u) << row.dump();
    // A chain stops at its first pass, else runs to --max-attempts.
    const bool first_passed = attempts[0]["passed"].get<bool>();
    EXPECT_EQ(attempts.size(), first_passed ? 1u : 2u) << row.dump();
    EXPECT_EQ(row["kept"].get<bool>(), attempts.back()["passed"].get<bool>());
    for (const auto& a : attempts) {
      EXPECT_TRUE(a["generation"].contains("seed")) << a.dump();
      EXPECT_GE(a["generation"]["tokens"].get<int64_t>(), 1) << a.dump();
      EXPECT_LE(a["generation"]["tokens"].get<int64_t>(), 24) << a.dump();
    }
    if (attempts.size() < 2) continue;
    ++second_attempts;
    // Independent reference: `generate` on the dialogue self-correction builds (the problem,
    // attempt 1 as the assistant, the feedback turn), with the recorded seed, gives attempt 2.
    json messages =
        json::array({{{"role", "user"}, {"content", row["prompt"]}},
                     {{"role", "assistant"}, {"content", attempts[0]["candidate"]}},
                     {{"role", "user"},
                      {"content", feedback_turn(attempts[0]["feedback"].get<std::string>())}}});
    EXPECT_NE(attempts[0]["feedback"].get<std::string>(), "");
    write_jsonl(root_ + "/g.jsonl",
                {{{"prompt", row["prompt"]}, {"seed", attempts[0]["generation"]["seed"]}},
                 {{"messages", messages}, {"seed", attempts[1]["generation"]["seed"]}}});
    auto g = testing::run_cli("generate --model " + root_ + "/model --input " + root_ +
                              "/g.jsonl --max-new-tokens 24 --output " + root_ + "/g.out.jsonl");
    ASSERT_EQ(g.code, 0) << g.output;
    const auto gen = read_jsonl(root_ + "/g.out.jsonl");
    ASSERT_EQ(gen.size(), 2u);
    EXPECT_EQ(gen[0]["samples"][0]["text"], attempts[0]["candidate"]);
    EXPECT_EQ(gen[1]["samples"][0]["text"], attempts[1]["candidate"]);
  }
  // A random model fails some first attempt (the reference answers are several-digit numbers).
  EXPECT_GE(second_attempts, 1);
}

TEST_F(SynthModel, VerdictsEqualVerifyOnTheSameCandidates) {
  auto r = synth("v.jsonl");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto rows = read_jsonl(root_ + "/v.jsonl");
  std::vector<json> lines;
  std::vector<json> expected;
  for (const auto& row : rows) {
    for (const auto& a : row["attempts"]) {
      lines.push_back({{"id", row["id"]},
                       {"prompt", row["prompt"]},
                       {"response", a["candidate"]},
                       {"answer", row["answer"]}});
      expected.push_back(a);
    }
  }
  ASSERT_FALSE(lines.empty());
  write_jsonl(root_ + "/verify_in.jsonl", lines);
  auto v = testing::run_cli("verify --kind math --input " + root_ + "/verify_in.jsonl --output " +
                            root_ + "/verify_out.jsonl");
  ASSERT_EQ(v.code, 0) << v.output;
  const auto verdicts = read_jsonl(root_ + "/verify_out.jsonl");
  ASSERT_EQ(verdicts.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(verdicts[i]["passed"], expected[i]["passed"]) << i;
    EXPECT_EQ(verdicts[i]["verdict"], expected[i]["verdict"]) << i;
    EXPECT_EQ(verdicts[i]["feedback"], expected[i]["feedback"]) << i;
  }
}

TEST_F(SynthModel, SameSeedSameOutputOtherSampleSeedOtherAttempts) {
  ASSERT_EQ(synth("s1.jsonl").code, 0);
  ASSERT_EQ(synth("s2.jsonl").code, 0);
  ASSERT_EQ(synth("s3.jsonl", "--sample-seed 99").code, 0);
  EXPECT_EQ(read_file(root_ + "/s1.jsonl"), read_file(root_ + "/s2.jsonl"));
  const auto a = read_jsonl(root_ + "/s1.jsonl");
  const auto b = read_jsonl(root_ + "/s3.jsonl");
  ASSERT_EQ(a.size(), b.size());
  int differ = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["id"], b[i]["id"]);  // same problems
    differ += a[i]["attempts"][0]["candidate"] != b[i]["attempts"][0]["candidate"];
  }
  EXPECT_GE(differ, 1);
}

TEST_F(SynthModel, StoreRecordsResponsesOfThePolicyWithSampling) {
  const std::string db = root_ + "/m.db";
  auto r = synth("st.jsonl", "--store " + db + " --round 1 --temperature 0.7 --top-k 50");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto rows = read_jsonl(root_ + "/st.jsonl");
  size_t attempts = 0;
  for (const auto& row : rows) attempts += row["attempts"].size();
  auto store = datastore::Store::open(db);
  auto& sql = store.db();
  EXPECT_EQ(sql.query_int("SELECT COUNT(*) FROM synthetic_attempts"),
            static_cast<int64_t>(attempts));
  // Every non-empty attempt is a response of the model's checkpoint with the settings.
  EXPECT_EQ(sql.query_int("SELECT COUNT(*) FROM synthetic_attempts WHERE response_id IS NULL "
                          "AND candidate <> ''"),
            0);
  const int64_t ckpt = sql.query_int("SELECT id FROM checkpoints");
  EXPECT_EQ(store.checkpoint(ckpt)->path, fs::weakly_canonical(root_ + "/model").string());
  EXPECT_EQ(sql.query_int("SELECT COUNT(*) FROM responses WHERE checkpoint_id IS NOT " +
                          std::to_string(ckpt)),
            0);
  const json sampling =
      json::parse(sql.query_text("SELECT sampling FROM responses ORDER BY id LIMIT 1"));
  EXPECT_DOUBLE_EQ(sampling["temperature"].get<double>(), 0.7);
  EXPECT_EQ(sampling["top_k"], 50);
  EXPECT_EQ(sampling["max_new_tokens"], 24);
  EXPECT_EQ(sampling["seed"], 3);
  // The same run again adds no attempt; another sampling seed adds its own chains.
  ASSERT_EQ(synth("st.jsonl", "--store " + db + " --round 1 --temperature 0.7 --top-k 50").code, 0);
  EXPECT_EQ(sql.query_int("SELECT COUNT(*) FROM synthetic_attempts"),
            static_cast<int64_t>(attempts));
  ASSERT_EQ(synth("st2.jsonl", "--store " + db + " --round 1 --sample-seed 8").code, 0);
  size_t more = 0;
  for (const auto& row : read_jsonl(root_ + "/st2.jsonl")) more += row["attempts"].size();
  EXPECT_EQ(sql.query_int("SELECT COUNT(*) FROM synthetic_attempts"),
            static_cast<int64_t>(attempts + more));
  // A second attempt answers the dialogue that ends with the checker's feedback.
  const std::string second_prompt = sql.query_text(
      "SELECT p.body FROM synthetic_attempts a JOIN responses r ON r.id = a.response_id "
      "JOIN prompts p ON p.id = r.prompt_id WHERE a.attempt = 1 LIMIT 1");
  const json dialogue = json::parse(second_prompt);
  ASSERT_EQ(dialogue.size(), 3u) << second_prompt;
  EXPECT_EQ(dialogue[2]["role"], "user");
  EXPECT_EQ(dialogue[2]["content"].get<std::string>().rfind(
                "Your previous answer was checked and it is not correct.", 0),
            0u);
}

TEST_F(SynthModel, RefusesCandidatesWithModelAndSamplingWithoutModel) {
  auto r = testing::run_cli("synth math --count 1 --candidates x.jsonl --model " + root_ +
                            "/model --out " + root_ + "/x.jsonl");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("not both"), std::string::npos) << r.output;
  r = testing::run_cli("synth math --count 1 --temperature 0.5 --out " + root_ + "/x.jsonl");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("--temperature is for --model"), std::string::npos) << r.output;
  r = testing::run_cli("synth math --count 1 --model " + root_ + "/model --top-p 1.5 --out " +
                       root_ + "/x.jsonl");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("top_p"), std::string::npos) << r.output;
}

// A model that corrects itself: SFT teaches the tiny model, on two problems, to answer
// "Answer: 0" first and, after exactly the checker's feedback turn for that answer (from
// `verify`, wrapped by feedback_turn), the reference solution. Greedy synth --model must then
// fail attempt 1, pass attempt 2 from the feedback dialogue, and keep that dialogue (weights 0
// then 1) in the output and as the round's SFT data in the store. It fails if the feedback
// turn the engine sees differs from the one the model learned.
TEST_F(SynthModel, AModelTaughtToUseFeedbackIsFixedByIt) {
  const std::string problems = "--count 2 --seed 3 --difficulty easy";
  auto r = testing::run_cli("synth math " + problems + " --out " + root_ + "/fp.jsonl");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto rows = read_jsonl(root_ + "/fp.jsonl");
  ASSERT_EQ(rows.size(), 2u);
  std::vector<json> wrong;
  for (const auto& row : rows) {
    wrong.push_back({{"id", row["id"]},
                     {"prompt", row["prompt"]},
                     {"response", "Answer: 0"},
                     {"answer", row["answer"]}});
  }
  write_jsonl(root_ + "/fv.jsonl", wrong);
  r = testing::run_cli("verify --kind math --input " + root_ + "/fv.jsonl --output " + root_ +
                       "/fv.out.jsonl");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto verdicts = read_jsonl(root_ + "/fv.out.jsonl");
  ASSERT_EQ(verdicts.size(), 2u);
  std::vector<json> dialogues;
  for (size_t i = 0; i < rows.size(); ++i) {
    ASSERT_FALSE(verdicts[i]["passed"].get<bool>());
    dialogues.push_back({{"messages",
                          {{{"role", "user"}, {"content", rows[i]["prompt"]}},
                           {{"role", "assistant"}, {"content", "Answer: 0"}},
                           {{"role", "user"},
                            {"content", feedback_turn(verdicts[i]["feedback"].get<std::string>())}},
                           {{"role", "assistant"}, {"content", rows[i]["reference_solution"]}}}}});
  }
  write_jsonl(root_ + "/fsft.jsonl", dialogues);
  // 100 steps bring the loss near 1e-3 (dialogues are ~520 byte-level tokens: max_seq_len must
  // hold them whole, or the answer's end is never trained).
  json config = {{"model", {{"path", root_ + "/model"}}},
                 {"data", {{"sources", {root_ + "/fsft.jsonl"}}, {"max_seq_len", 1024}}},
                 {"optimizer", {{"lr", 0.003}}},
                 {"schedule", {{"warmup_steps", 5}, {"decay", "constant"}}},
                 {"training", {{"max_steps", 100}, {"micro_batch_size", 2}, {"threads", 1}}},
                 {"output", {{"dir", root_ + "/fsft"}}}};
  std::ofstream(root_ + "/fsft.json") << config.dump();
  r = testing::run_cli("sft --config " + root_ + "/fsft.json");
  ASSERT_EQ(r.code, 0) << r.output;

  const std::string db = root_ + "/f.db";
  r = testing::run_cli("synth math " + problems + " --model " + root_ +
                       "/fsft --temperature 0 --max-new-tokens 64 --max-attempts 3 --round 4 "
                       "--out " +
                       root_ + "/f.jsonl --store " + db);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("\"fixed_by_feedback\":2"), std::string::npos) << r.output;
  const auto out = read_jsonl(root_ + "/f.jsonl");
  ASSERT_EQ(out.size(), 2u);
  for (size_t i = 0; i < out.size(); ++i) {
    const auto& attempts = out[i]["attempts"];
    ASSERT_EQ(attempts.size(), 2u) << out[i].dump();
    EXPECT_EQ(attempts[0]["candidate"], "Answer: 0");
    EXPECT_EQ(attempts[0]["feedback"], verdicts[i]["feedback"]);
    EXPECT_TRUE(attempts[1]["passed"].get<bool>()) << out[i].dump();
    ASSERT_TRUE(out[i]["kept"].get<bool>());
    const auto& kept = out[i]["messages"];
    ASSERT_EQ(kept.size(), 4u);
    EXPECT_EQ(kept[1]["weight"], 0);
    EXPECT_EQ(kept[2]["content"], dialogues[i]["messages"][2]["content"]);
    EXPECT_EQ(kept[3]["content"], attempts[1]["candidate"]);
    EXPECT_EQ(kept[3]["weight"], 1);
  }
  auto store = datastore::Store::open(db);
  EXPECT_EQ(store.dialogues().size(), 2u);
  EXPECT_EQ(store.selected_samples(4).size(), 2u);
}

}  // namespace
}  // namespace posttrain::synthetic
