// The eval stage (recipes/evals.h): its config and checks, the held-out/training disjointness
// (recipes/heldout.h), and one round through the built executable (POSTTRAIN_BIN) on tiny models
// where each recorded eval is recomputed here from the commands' own outputs: win-rate and RM
// accuracy from our own `reward score` runs, DPO margins from the log-probs `dpo eval` reports,
// accuracies from the verdicts.
#include "recipes/evals.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "common/error.h"
#include "common/files.h"
#include "common/sha256.h"
#include "datastore/store.h"
#include "recipes/eval_results.h"
#include "recipes/heldout.h"
#include "recipes/recipe.h"
#include "recipe_test_util.h"

namespace posttrain::recipes {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kSftData = test_util::tiny_sft_data();

// (A vector, since a one-element braced list would be taken for the element itself.)
json recipe_with(const std::vector<json>& stages) {
  return {{"name", "evals"},
          {"model", {{"init", {{"preset", "tiny"}, {"seed", 0}}}}},
          {"num_rounds", 2},
          {"rounds", json::array({{{"stages", json(stages)}}})}};
}

json stage(const std::string& name, const std::string& kind, const json& config) {
  return {{"name", name}, {"kind", kind}, {"config", config}};
}

using test_util::check_error;

std::vector<json> read_jsonl(const std::string& path) {
  std::vector<json> rows;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) rows.push_back(json::parse(line));
  }
  return rows;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `posttrain ARGS` with its output in LOG; the exit status.
int posttrain(const std::string& args, const std::string& log) {
  const std::string cmd = std::string(POSTTRAIN_BIN) + " " + args + " > " + log + " 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

class EvalFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() /
            ("posttrain_evals_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    posttrain::remove_tree(root_.string());
    fs::create_directories(root_);
  }
  void TearDown() override { posttrain::remove_tree(root_.string()); }
  std::string path(const std::string& name) const { return (root_ / name).string(); }
  fs::path root_;
};

// ---- config ----------------------------------------------------------------------------------

TEST(EvalConfig, TheFlatMathFormStillWorks) {
  const json flat = {{"kind", "math"}, {"count", 3}, {"seed", 9001}, {"max_new_tokens", 16}};
  EXPECT_EQ(check_error(recipe_with({stage("eval", "eval", flat)})), "");
  const json full = eval_defaults(flat, "e");
  EXPECT_EQ(full["math"], (json{{"count", 3}, {"seed", 9001}, {"max_new_tokens", 16}}));
  EXPECT_EQ(full["model"], "${policy}");
  EXPECT_FALSE(full.contains("kind"));
}

TEST(EvalConfig, DefaultsFillSeedsModelsAndReference) {
  const json full = eval_defaults(
      {{"math", {{"count", 2}}}, {"win_rate", {{"count", 2}}}, {"dpo", {{"pairs", "p.jsonl"}}}},
      "e");
  EXPECT_EQ(full["math"]["seed"], kMathEvalSeed);
  EXPECT_EQ(full["win_rate"]["seed"], kWinRateEvalSeed);
  EXPECT_EQ(full["win_rate"]["previous"], "${previous_policy}");
  EXPECT_EQ(full["dpo"]["reference"], "${previous_policy}");
  EXPECT_EQ(full["reward_model"], "${reward_model}");
}

TEST(EvalConfig, EachMistakeNamesTheKey) {
  auto error_of = [](const json& config) {
    return check_error(recipe_with({stage("eval", "eval", config)}));
  };
  EXPECT_NE(error_of({{"math", {{"cnt", 3}}}}).find("math.cnt"), std::string::npos);
  EXPECT_NE(error_of({{"math", {{"count", 0}}}}).find("math.count"), std::string::npos);
  EXPECT_NE(error_of({{"tool", {{"count", 2}, {"max_turns", 9}}}}).find("tool.max_turns"),
            std::string::npos);
  EXPECT_NE(error_of({{"max_new_tokens", 8}}).find("names no eval"), std::string::npos);
  EXPECT_NE(error_of({{"dpo", json::object()}}).find("dpo.pairs"), std::string::npos);
  EXPECT_NE(error_of({{"win_rate", {{"prompts", "p.jsonl"}, {"count", 2}}}, {"reward_model", "rm"}})
                .find("win_rate.prompts"),
            std::string::npos);
  EXPECT_NE(error_of({{"kind", "tool"}, {"count", 2}}).find("kind"), std::string::npos);
  // The reward eval scores with ${reward_model}: some stage before it must train one.
  EXPECT_NE(error_of({{"reward", {{"pairs", "p.jsonl"}}}})
                .find("no stage before this one trains a reward model"),
            std::string::npos);
}

// ---- held-out data never trains --------------------------------------------------------------

TEST(Heldout, AnEvalSeedEqualToASynthStagesSeedIsCaught) {
  const json synth = stage("data", "synth", {{"kind", "math"}, {"count", 10}, {"seed", 9001}});
  const json eval = stage("eval", "eval", {{"math", {{"count", 5}, {"seed", 9001}}}});
  std::string e = check_error(recipe_with({synth, eval}));
  EXPECT_NE(e.find("rounds[0].stages[1].config.math.seed"), std::string::npos) << e;
  EXPECT_NE(e.find("seed 9001"), std::string::npos) << e;
  EXPECT_NE(e.find("stage 'data'"), std::string::npos) << e;

  // The same when the synth stage runs in a later round only.
  json doc = recipe_with({eval});
  doc["rounds"].push_back({{"stages", json::array({synth})}});
  EXPECT_NE(check_error(doc).find("seed 9001"), std::string::npos);
  EXPECT_EQ(check_error(doc, /*rounds=*/1), "");  // round 1 never runs

  // synth's default seed is 0; "${round}" is the round's number.
  EXPECT_NE(check_error(recipe_with({stage("d", "synth", {{"kind", "code"}, {"count", 3}}),
                                     stage("e", "eval", {{"code", {{"count", 2}, {"seed", 0}}}})}))
                .find("seed 0"),
            std::string::npos);
  EXPECT_NE(check_error(recipe_with({stage("d", "synth",
                                           {{"kind", "tool"}, {"count", 3}, {"seed", "${round}"}}),
                                     stage("e", "eval", {{"tool", {{"count", 2}, {"seed", 1}}}})}))
                .find("seed 1"),
            std::string::npos);
  // Another kind with the same seed makes other problems.
  EXPECT_EQ(check_error(recipe_with(
                {synth, stage("eval", "eval", {{"code", {{"count", 5}, {"seed", 9001}}}})})),
            "");
}

TEST_F(EvalFiles, AHeldOutPairFileReadForTrainingIsCaught) {
  fs::create_directories(root_ / "sub");
  std::ofstream(path("pairs.jsonl")) << R"({"prompt": "p", "chosen": "a", "rejected": "b"})"
                                     << "\n";
  json dpo_cfg = {{"data", {{"sources", {{{"path", path("sub/../pairs.jsonl")}}}}}},
                  {"training", {{"max_steps", 1}}}};
  const json doc =
      recipe_with({stage("dpo", "dpo", dpo_cfg),
                   stage("eval", "eval", {{"dpo", {{"pairs", path("pairs.jsonl")}}}})});
  const std::string e = check_error(doc);
  EXPECT_NE(e.find("rounds[0].stages[1].config.dpo.pairs"), std::string::npos) << e;
  EXPECT_NE(e.find("training source of stage 'dpo'"), std::string::npos) << e;
}

// The default seeds of the eval sets against synth stages at synth's default seed and at
// "${round}" (the usual per-round data): the recipe check passes, and what the eval keeps of
// each default held-out set is disjoint from that training data by prompt text. Other seeds
// still repeat some prompt texts (code prompts are a family's description and signature,
// whatever the seed; small math/tool templates repeat by chance): those are left out, exactly
// the ones whose text the training set holds.
TEST_F(EvalFiles, TheDefaultSplitIsDisjoint) {
  std::vector<json> stages;
  json eval = json::object();
  for (const char* kind : {"math", "tool", "code"}) {
    stages.push_back(stage(std::string("d0_") + kind, "synth", {{"kind", kind}, {"count", 100}}));
    stages.push_back(stage(std::string("dr_") + kind, "synth",
                           {{"kind", kind}, {"count", 100}, {"seed", "${round}"}}));
    eval[kind] = {{"count", 30}};
  }
  eval["win_rate"] = {{"count", 30}};
  eval["reward_model"] = "rm";
  stages.push_back(stage("eval", "eval", eval));
  EXPECT_EQ(check_error(recipe_with(stages), /*rounds=*/3), "");

  const json full = eval_defaults(eval, "e");
  const std::string db = path("store.db");
  std::map<std::string, std::set<std::string>> train;  // kind -> training prompt texts
  for (const char* kind : {"math", "tool", "code"}) {
    for (int seed : {0, 1, 2}) {
      const std::string args = std::string("synth ") + kind + " --count 100 --seed " +
                               std::to_string(seed) + " --round " + std::to_string(seed);
      ASSERT_EQ(posttrain(args + " --store " + db, path("log")), 0) << slurp(path("log"));
      ASSERT_EQ(posttrain(args + " --output " + path("t.jsonl"), path("log")), 0);
      for (const json& row : read_jsonl(path("t.jsonl"))) {
        train[kind].insert(row["prompt"].get<std::string>());
      }
    }
  }
  std::map<std::string, std::vector<json>> held;  // eval -> its problems as synth wrote them
  for (const char* e : {"math", "tool", "code", "win_rate"}) {
    const std::string kind = std::string(e) == "win_rate" ? "math" : e;
    fs::create_directories(root_ / "out" / e);
    const std::string file = path(std::string("out/") + e + "/problems.jsonl");
    ASSERT_EQ(posttrain("synth " + kind + " --count 30 --seed " + full[e]["seed"].dump() +
                            " --output " + file,
                        path("log")),
              0);
    held[e] = read_jsonl(file);
  }
  const auto left_out = exclude_training_prompts(full, path("out"), db);
  for (const auto& [e, problems] : held) {
    const std::string kind = e == "win_rate" ? "math" : e;
    std::set<std::string> kept_ids;
    for (const json& row : read_jsonl(path("out/" + e + "/problems.jsonl"))) {
      kept_ids.insert(row["id"].get<std::string>());
      EXPECT_EQ(train[kind].count(row["prompt"].get<std::string>()), 0u) << row["id"];
    }
    int64_t expect_left_out = 0;
    for (const json& row : problems) {
      const bool trained = train[kind].count(row["prompt"].get<std::string>()) > 0;
      expect_left_out += trained;
      EXPECT_EQ(kept_ids.count(row["id"].get<std::string>()), trained ? 0u : 1u) << row["id"];
    }
    EXPECT_EQ(left_out.count(e) ? left_out.at(e) : 0, expect_left_out) << e;
    std::cout << e << ": " << expect_left_out << " of 30 default held-out prompts repeat a "
              << "training prompt text and are left out\n";
  }
}

// Problems already in the store as training data (synth --store, outside the recipe): the eval
// stage refuses before any model runs, and nothing of it is recorded.
TEST_F(EvalFiles, AnEvalPromptInTheStoresTrainingDataFailsTheStage) {
  const std::string db = path("store.db");
  ASSERT_EQ(posttrain("synth math --count 6 --seed 9001 --store " + db, path("log")), 0)
      << slurp(path("log"));
  json doc = recipe_with({stage("eval", "eval", {{"math", {{"count", 3}, {"seed", 9001}}}})});
  doc["store"] = db;
  doc["num_rounds"] = 1;
  std::ofstream(path("r.json")) << doc.dump(2);
  const std::string out = path("out");
  EXPECT_NE(posttrain("recipe run " + path("r.json") + " --output " + out, path("run.log")), 0);
  const std::string log = slurp(path("run.log"));
  EXPECT_NE(log.find("every held-out prompt of eval 'math'"), std::string::npos) << log;
  EXPECT_NE(log.find("held-out math-9001-0 left out: its prompt is training data in the store "
                     "(synthetic problem 1 (round 0))"),
            std::string::npos)
      << log;
  EXPECT_FALSE(fs::exists(out + "/round-0/eval/math/generated.jsonl"));
  // The hashes it checked, one per problem.
  const auto heldout = read_jsonl(out + "/round-0/eval/heldout.jsonl");
  ASSERT_EQ(heldout.size(), 3u);
  for (const json& h : heldout) {
    EXPECT_TRUE(h.contains("training")) << h.dump();
    EXPECT_EQ(h["sha256"].size(), 1u);
  }
  datastore::Store store = datastore::Store::open(db);
  EXPECT_TRUE(store.evals().empty());
}

// ---- the reductions, on hand-written score files ---------------------------------------------

TEST_F(EvalFiles, TiesCountHalfInTheWinRateAndWrongInRmAccuracy) {
  fs::create_directories(root_ / "win_rate");
  fs::create_directories(root_ / "reward");
  fs::create_directories(root_ / "dpo");
  // Win-rate: ids a, b, c with new vs previous rewards 1 > 0.5 (win), 0.5 = 0.5 (tie), 0.2 < 0.3
  // (loss), written in different orders: (1 + 0.5 + 0) / 3 = 0.5.
  std::ofstream(path("win_rate/new.scores.jsonl")) << R"({"id": "a", "reward": 1.0}
{"id": "b", "reward": 0.5}
{"id": "c", "reward": 0.2}
)";
  std::ofstream(path("win_rate/previous.scores.jsonl")) << R"({"id": "c", "reward": 0.3}
{"id": "a", "reward": 0.5}
{"id": "b", "reward": 0.5}
)";
  // RM accuracy: pair 0 right (2 > 1), pair 1 a tie (wrong): 1 / 2.
  std::ofstream(path("reward/scores.jsonl")) << R"({"pair": 0, "side": "chosen", "reward": 2}
{"pair": 0, "side": "rejected", "reward": 1}
{"pair": 1, "side": "chosen", "reward": 3}
{"pair": 1, "side": "rejected", "reward": 3}
)";
  // DPO: margins 0.25 - (-0.5) = 0.75 and 0.1 - 0.3 = -0.2: mean 0.275, accuracy 1 / 2.
  std::ofstream(path("dpo/scored.jsonl")) << R"({"chosen_reward": 0.25, "rejected_reward": -0.5}
{"chosen_reward": 0.1, "rejected_reward": 0.3}
)";
  write_eval_results(
      {{"win_rate", json::object()}, {"reward", json::object()}, {"dpo", json::object()}},
      root_.string());
  std::ifstream in(path("evals.json"));
  const json evals = json::parse(in);
  EXPECT_DOUBLE_EQ(evals["win_rate"]["value"].get<double>(), 0.5);
  EXPECT_EQ(evals["win_rate"]["details"]["n"], 3);
  EXPECT_DOUBLE_EQ(evals["reward_accuracy"]["value"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(evals["dpo_margin"]["value"].get<double>(), 0.275);
  EXPECT_DOUBLE_EQ(evals["dpo_accuracy"]["value"].get<double>(), 0.5);
}

TEST_F(EvalFiles, PairsBecomeTwoScoreRowsEach) {
  const json user = {{"role", "user"}, {"content", "q"}};
  const json c = {user, {{"role", "assistant"}, {"content", "c"}}};
  const json d = {user, {{"role", "assistant"}, {"content", "d"}}};
  std::ofstream(path("pairs.jsonl"))
      << json{{"prompt", "p"}, {"chosen", "a"}, {"rejected", "b"}}.dump() << "\n"
      << json{{"chosen", c}, {"rejected", d}}.dump() << "\n";
  write_pair_score_input(path("pairs.jsonl"), path("out.jsonl"));
  const auto rows = read_jsonl(path("out.jsonl"));
  ASSERT_EQ(rows.size(), 4u);
  const json p_a = {{{"role", "user"}, {"content", "p"}},
                    {{"role", "assistant"}, {"content", "a"}}};
  EXPECT_EQ(rows[0], (json{{"messages", p_a}, {"pair", 0}, {"side", "chosen"}}));
  EXPECT_EQ(rows[1]["messages"][1]["content"], "b");
  EXPECT_EQ(rows[3], (json{{"messages", d}, {"pair", 1}, {"side", "rejected"}}));

  std::ofstream(path("bad.jsonl")) << R"({"prompt": "p", "chosen": "a", "rejected": "b"}
{"prompt": "p", "chosen": "a"}
)";
  try {
    write_pair_score_input(path("bad.jsonl"), path("bad_out.jsonl"));
    ADD_FAILURE() << "a pair without 'rejected' passed";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("rejected"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path("bad_out.jsonl")));
}

// A scripted two-turn tool dialogue through the tool steps: the first answer calls the
// calculator, `verify --kind tool` executes it, the second turn sees the result and answers.
TEST_F(EvalFiles, AToolCallIsExecutedAndTheDialogueGoesOn) {
  const std::string dir = root_.string();
  std::ofstream(path("problems.jsonl")) << json{{"id", "t1"},
                                                {"system", "S"},
                                                {"prompt", "What is 2 + 3?"},
                                                {"tools", {"calculator"}},
                                                {"answer", "5"}}
                                               .dump()
                                        << "\n";
  write_tool_turn_input(dir, 0);
  auto turn = read_jsonl(path("turn-0.jsonl"));
  ASSERT_EQ(turn.size(), 1u);
  EXPECT_EQ(turn[0]["messages"], (json{{{"role", "system"}, {"content", "S"}},
                                       {{"role", "user"}, {"content", "What is 2 + 3?"}}}));
  const std::string call = "<|python_tag|>calculator.call(expression=\"2 + 3\")";
  std::ofstream(path("turn-0.generated.jsonl"))
      << json{{"id", "t1"}, {"samples", {{{"text", call}}}}}.dump() << "\n";
  collect_tool_turn(dir, 0);
  const auto open = read_jsonl(path("turn-0.open.jsonl"));
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0]["response"], json::array({call}));
  ASSERT_EQ(posttrain("verify --kind tool --input " + path("turn-0.open.jsonl") + " --output " +
                          path("turn-0.executed.jsonl"),
                      path("log")),
            0)
      << slurp(path("log"));

  write_tool_turn_input(dir, 1);
  turn = read_jsonl(path("turn-1.jsonl"));
  ASSERT_EQ(turn.size(), 1u);
  const json& m = turn[0]["messages"];
  ASSERT_EQ(m.size(), 4u) << m.dump();
  EXPECT_EQ(m[2], (json{{"role", "assistant"}, {"content", call}}));
  EXPECT_EQ(m[3], (json{{"role", "ipython"}, {"content", "5"}}));
  std::ofstream(path("turn-1.generated.jsonl"))
      << json{{"id", "t1"}, {"samples", {{{"text", "Answer: 5"}}}}}.dump() << "\n";
  collect_tool_turn(dir, 1);
  EXPECT_TRUE(read_jsonl(path("turn-1.open.jsonl")).empty());
  write_tool_verify_input(dir, path("responses.jsonl"));
  ASSERT_EQ(posttrain("verify --kind tool --input " + path("responses.jsonl") + " --output " +
                          path("verdicts.jsonl"),
                      path("log")),
            0);
  const auto verdicts = read_jsonl(path("verdicts.jsonl"));
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_TRUE(verdicts[0]["passed"].get<bool>()) << verdicts[0].dump();
}

TEST_F(EvalFiles, WinRatePromptsFileRowsGetIds) {
  std::ofstream(path("p.jsonl")) << R"({"prompt": "a"}
{"id": "x", "prompt": [{"role": "user", "content": "b"}], "extra": 1}
)";
  copy_prompt_rows(path("p.jsonl"), path("out.jsonl"));
  const auto rows = read_jsonl(path("out.jsonl"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], (json{{"id", "prompt-1"}, {"prompt", "a"}}));
  EXPECT_EQ(rows[1]["id"], "x");
  EXPECT_FALSE(rows[1].contains("extra"));
  std::ofstream(path("bad.jsonl")) << R"({"prompt": 3})"
                                   << "\n";
  EXPECT_THROW(copy_prompt_rows(path("bad.jsonl"), path("bad_out.jsonl")), InputError);
}

// ---- one round end to end ----------------------------------------------------------------------

double reward_of(const json& row) { return row.at("reward").get<double>(); }

// A `reward score` row of one user turn and one answer (possibly empty: the SFT'd tiny policy
// may stop at once).
std::string chat(const json& prompt, const json& answer) {
  return json{
      {"messages",
       {{{"role", "user"}, {"content", prompt}}, {{"role", "assistant"}, {"content", answer}}}}}
      .dump();
}

TEST_F(EvalFiles, EachEvalEqualsItsIndependentRecomputation) {
  const std::string rm = path("rm"), pairs = path("pairs.jsonl"), out = path("out");
  ASSERT_EQ(posttrain("init --preset tiny --reward-model --seed 3 --output " + rm, path("log")), 0)
      << slurp(path("log"));
  std::ofstream(pairs)
      << R"({"prompt": "What is 2 + 3?", "chosen": "2 + 3 = 5\nAnswer: 5", "rejected": "Answer: 6"}
{"prompt": "What is 10 - 4?", "chosen": "Answer: 6", "rejected": "10 - 4 = 7\nAnswer: 7"}
{"prompt": "What is 3 * 3?", "chosen": "3 * 3 = 9\nAnswer: 9", "rejected": "Answer: 33"}
)";
  const json sft = {{"data", {{"sources", {{{"path", kSftData}}}}, {"max_seq_len", 128}}},
                    {"optimizer", {{"lr", 3e-3}}},
                    {"training", {{"max_steps", 2}, {"micro_batch_size", 2}, {"seed", 0}}}};
  const json eval = {{"math", {{"count", 2}}},
                     {"tool", {{"count", 2}, {"max_turns", 2}}},
                     {"code", {{"count", 2}}},
                     {"reward", {{"pairs", pairs}}},
                     {"dpo", {{"pairs", pairs}, {"beta", 0.5}}},
                     {"win_rate", {{"count", 3}}},
                     {"reward_model", rm},
                     {"max_new_tokens", 6}};
  json doc = recipe_with({stage("sft", "sft", sft), stage("eval", "eval", eval)});
  doc["num_rounds"] = 1;
  std::ofstream(path("r.json")) << doc.dump(2);
  ASSERT_EQ(posttrain("recipe run " + path("r.json") + " --output " + out, path("run.log")), 0)
      << slurp(path("run.log"));
  const std::string dir = out + "/round-0/eval";

  // What the runner recorded: rounds.jsonl's line and the store's evals of the SFT checkpoint.
  const auto lines = read_jsonl(out + "/rounds.jsonl");
  ASSERT_EQ(lines.size(), 1u);
  const json& line = lines[0];
  datastore::Store store = datastore::Store::open(out + "/store.db");
  const auto sft_ckpt = store.checkpoint_by_path(out + "/round-0/sft");
  ASSERT_TRUE(sft_ckpt);
  std::map<std::string, double> stored;
  for (const auto& e : store.evals()) {
    EXPECT_EQ(e.round, 0);
    EXPECT_EQ(e.checkpoint_id, sft_ckpt->id) << e.name;
    stored[e.name] = e.value;
  }
  const std::vector<std::string> names = {"heldout_accuracy", "tool_accuracy", "code_pass_at_1",
                                          "reward_accuracy",  "dpo_margin",    "dpo_accuracy",
                                          "win_rate"};
  EXPECT_EQ(stored.size(), names.size());
  for (const auto& name : names) {
    ASSERT_TRUE(line.contains(name)) << name << " " << line.dump();
    EXPECT_EQ(line[name].get<double>(), stored.at(name)) << name;
  }

  // Accuracies: the share of passing verdicts, one verdict per held-out problem.
  const std::map<std::string, std::string> verified = {
      {"math", "heldout_accuracy"}, {"tool", "tool_accuracy"}, {"code", "code_pass_at_1"}};
  for (const auto& [eval_name, metric] : verified) {
    const auto verdicts = read_jsonl(dir + "/" + eval_name + "/verdicts.jsonl");
    const auto problems = read_jsonl(dir + "/" + eval_name + "/problems.jsonl");
    ASSERT_EQ(verdicts.size(), problems.size()) << eval_name;
    double passed = 0;
    for (size_t i = 0; i < verdicts.size(); ++i) {
      EXPECT_EQ(verdicts[i]["id"], problems[i]["id"]);
      passed += verdicts[i]["passed"].get<bool>() ? 1 : 0;
    }
    EXPECT_DOUBLE_EQ(stored.at(metric), passed / static_cast<double>(verdicts.size()));
  }
  EXPECT_EQ(read_jsonl(dir + "/math/problems.jsonl")[0]["id"], "math-9001-0");
  // A tool dialogue has at most max_turns assistant messages; each but the last called a tool.
  for (const json& v : read_jsonl(dir + "/tool/verdicts.jsonl")) {
    const json& msgs = v["response"];
    ASSERT_TRUE(msgs.is_array());
    EXPECT_GE(msgs.size(), 1u);
    EXPECT_LE(msgs.size(), 2u);
    for (size_t i = 0; i + 1 < msgs.size(); ++i) {
      EXPECT_NE(msgs[i].get<std::string>().find("<|python_tag|>"), std::string::npos);
    }
  }

  // RM accuracy: our own `reward score` of each pair's two responses.
  {
    std::ofstream rows(path("rm_in.jsonl"));
    for (const json& p : read_jsonl(pairs)) {
      for (const char* side : {"chosen", "rejected"}) rows << chat(p["prompt"], p[side]) << "\n";
    }
  }
  ASSERT_EQ(posttrain("reward score --model " + rm + " --input " + path("rm_in.jsonl") +
                          " --output " + path("rm_out.jsonl"),
                      path("log")),
            0)
      << slurp(path("log"));
  const auto rm_scores = read_jsonl(path("rm_out.jsonl"));
  ASSERT_EQ(rm_scores.size(), 6u);
  double right = 0;
  for (size_t i = 0; i < 6; i += 2) right += reward_of(rm_scores[i]) > reward_of(rm_scores[i + 1]);
  EXPECT_DOUBLE_EQ(stored.at("reward_accuracy"), right / 3.0);

  // DPO: the implicit rewards from the four log-prob sums dpo eval reports, beta = 0.5.
  const auto dpo_rows = read_jsonl(dir + "/dpo/scored.jsonl");
  ASSERT_EQ(dpo_rows.size(), 3u);
  double margin = 0, dpo_right = 0;
  for (const json& r : dpo_rows) {
    const double m =
        0.5 * ((r["chosen_logps"].get<double>() - r["ref_chosen_logps"].get<double>()) -
               (r["rejected_logps"].get<double>() - r["ref_rejected_logps"].get<double>()));
    margin += m / 3.0;
    dpo_right += m > 0 ? 1.0 / 3.0 : 0.0;
  }
  EXPECT_NEAR(stored.at("dpo_margin"), margin, 1e-9 + 1e-6 * std::abs(margin));
  EXPECT_NE(stored.at("dpo_margin"), 0.0);  // the policy moved away from the base by 2 steps
  EXPECT_DOUBLE_EQ(stored.at("dpo_accuracy"), dpo_right);

  // Win-rate: our own `reward score` of both policies' greedy answers, win 1, tie 0.5.
  for (const char* side : {"new", "previous"}) {
    std::ofstream rows(path(std::string(side) + "_in.jsonl"));
    for (const json& g : read_jsonl(dir + "/win_rate/" + side + ".generated.jsonl")) {
      rows << chat(g["prompt"], g["samples"][0]["text"]) << "\n";
    }
    rows.close();
    ASSERT_EQ(posttrain("reward score --model " + rm + " --input " +
                            path(std::string(side) + "_in.jsonl") + " --output " +
                            path(std::string(side) + "_out.jsonl"),
                        path("log")),
              0)
        << slurp(path("log"));
  }
  const auto s_new = read_jsonl(path("new_out.jsonl")),
             s_old = read_jsonl(path("previous_out.jsonl"));
  ASSERT_EQ(s_new.size(), 3u);
  ASSERT_EQ(s_old.size(), 3u);
  double wins = 0;
  for (size_t i = 0; i < 3; ++i) {
    wins += reward_of(s_new[i]) > reward_of(s_old[i])    ? 1.0
            : reward_of(s_new[i]) == reward_of(s_old[i]) ? 0.5
                                                         : 0.0;
  }
  EXPECT_DOUBLE_EQ(stored.at("win_rate"), wins / 3.0);
  // The previous policy is the round's start: the base model, not the SFT output.
  EXPECT_NE(slurp(out + "/round-0/eval.config.json").find(out + "/base"), std::string::npos);

  // The report draws every eval by round.
  ASSERT_EQ(
      posttrain("report --store " + out + "/store.db --output " + path("report.html"), path("log")),
      0)
      << slurp(path("log"));
  const std::string html = slurp(path("report.html"));
  for (const auto& name : names)
    EXPECT_NE(html.find(name + " by round"), std::string::npos) << name;
}

}  // namespace
}  // namespace posttrain::recipes
