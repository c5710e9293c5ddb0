// Recipes: parsing and checking (one clear error per mistake, naming the key), placeholders,
// and the runner end to end through the built executable (POSTTRAIN_BIN) on a micro recipe
// that runs in seconds: SIGKILLed in the middle of a round and run again, its store and final
// weights equal an uninterrupted run's.
#include "recipes/recipe.h"
#include "recipe_test_util.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "common/files.h"
#include "datastore/sqlite.h"
#include "datastore/store.h"
#include "recipes/placeholders.h"

namespace posttrain::recipes {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kSftData = test_util::tiny_sft_data();

json sft_config(double lr, int seed, int steps) {
  return {{"data", {{"sources", {{{"path", kSftData}}}}, {"max_seq_len", 128}}},
          {"optimizer", {{"lr", lr}}},
          {"training", {{"max_steps", steps}, {"micro_batch_size", 2}, {"seed", seed}}},
          {"output", {{"save_every", 2}}}};
}

// init tiny -> round 0: sft; round 1 (and later): two SFT runs from the round-0 policy with
// other hyperparameters, averaged.
json micro_recipe() {
  json r0 = {{"stages", {{{"name", "sft"}, {"kind", "sft"}, {"config", sft_config(3e-3, 0, 3)}}}}};
  json r1 = {{"stages",
              {{{"name", "sft_a"}, {"kind", "sft"}, {"config", sft_config(2e-3, 1, 3)}},
               {{"name", "sft_b"}, {"kind", "sft"}, {"config", sft_config(1e-3, 2, 3)}},
               {{"name", "avg"},
                {"kind", "average"},
                {"config", {{"inputs", {"${stage:sft_a}", "${stage:sft_b}"}}}}}}}};
  return {{"name", "micro"},
          {"model", {{"init", {{"preset", "tiny"}, {"seed", 0}}}}},
          {"num_rounds", 2},
          {"rounds", {r0, r1}}};
}

using test_util::check_error;

TEST(RecipeParse, TheMicroRecipeChecks) {
  EXPECT_EQ(check_error(micro_recipe()), "");
  const Recipe r = parse_recipe(micro_recipe(), "r.json");
  EXPECT_EQ(r.round(5).stages.size(), 3u);  // the last round's stages repeat
  EXPECT_EQ(r.round(0).stages.size(), 1u);
}

TEST(RecipeParse, EachMistakeIsOneErrorNamingTheKey) {
  json doc = micro_recipe();
  doc["epochs"] = 3;
  EXPECT_NE(check_error(doc).find("epochs"), std::string::npos);

  doc = micro_recipe();
  doc["rounds"][1]["stages"][1]["name"] = "sft_a";
  EXPECT_NE(check_error(doc).find("rounds[1].stages[1].name"), std::string::npos);

  doc = micro_recipe();
  doc["rounds"][0]["stages"][0]["kind"] = "sfft";
  EXPECT_NE(check_error(doc).find("unknown stage kind 'sfft'"), std::string::npos);

  doc = micro_recipe();
  doc["rounds"][0]["stages"][0]["config"]["optimizer"]["lrr"] = 1;
  EXPECT_NE(check_error(doc).find("optimizer.lrr"), std::string::npos);

  doc = micro_recipe();
  doc["rounds"][0]["stages"][0]["config"]["training"]["max_steps"] = "ten";
  EXPECT_NE(check_error(doc).find("training.max_steps"), std::string::npos);

  doc = micro_recipe();
  doc["rounds"][0]["stages"][0]["config"]["output"]["dir"] = "/tmp/x";
  EXPECT_NE(check_error(doc).find("output.dir"), std::string::npos);

  doc = micro_recipe();
  doc["num_rounds"] = 0;
  EXPECT_NE(check_error(doc).find("num_rounds"), std::string::npos);
}

TEST(RecipeParse, StagesInAnImpossibleOrderAreRefused) {
  json doc = micro_recipe();
  // The average names sft_b, which now comes after it.
  std::swap(doc["rounds"][1]["stages"][1], doc["rounds"][1]["stages"][2]);
  const std::string e = check_error(doc);
  EXPECT_NE(e.find("${stage:sft_b}"), std::string::npos) << e;
  EXPECT_NE(e.find("does not come earlier"), std::string::npos) << e;

  doc = micro_recipe();
  doc["rounds"][0]["stages"][0]["config"]["model"]["path"] = "${reward_model}";
  EXPECT_NE(check_error(doc).find("no stage before this one trains a reward model"),
            std::string::npos);

  doc = micro_recipe();
  doc["rounds"][0]["stages"][0]["config"]["model"]["path"] = "${polcy}";
  EXPECT_NE(check_error(doc).find("unknown placeholder ${polcy}"), std::string::npos);
}

TEST(RecipeParse, RewardAndDpoStagesUseTheirCommandsSchemas) {
  json doc = micro_recipe();
  json reward_cfg = sft_config(1e-3, 0, 2);
  json dpo_cfg = sft_config(1e-3, 0, 2);
  dpo_cfg["dpo"] = {{"beta", 0.1}};
  dpo_cfg["data"].erase("max_seq_len");  // DPO names its length limit data.max_length
  dpo_cfg["data"]["max_length"] = 128;
  doc["rounds"][1]["stages"] = {
      {{"name", "rm"}, {"kind", "reward"}, {"config", reward_cfg}},
      {{"name", "dpo"}, {"kind", "dpo"}, {"config", dpo_cfg}},
      {{"name", "score"}, {"kind", "sft"}, {"config", sft_config(1e-3, 0, 1)}}};
  doc["rounds"][1]["stages"][2]["config"]["model"]["path"] = "${reward_model}";
  EXPECT_EQ(check_error(doc), "");
  doc["rounds"][1]["stages"][1]["config"]["dpo"]["betaa"] = 0.2;
  EXPECT_NE(check_error(doc).find("dpo.betaa"), std::string::npos);
  // ${reward_model} in round 1's first stage: the reward stage comes later in that round.
  doc = micro_recipe();
  doc["rounds"][1]["stages"][0]["config"]["model"]["path"] = "${reward_model}";
  doc["rounds"][1]["stages"][1] = {{"name", "rm"}, {"kind", "reward"}, {"config", reward_cfg}};
  EXPECT_NE(check_error(doc).find("no stage before this one trains a reward model"),
            std::string::npos);
}

TEST(RecipeParse, MissingPathsAreErrorsUnlessSkipped) {
  json doc = micro_recipe();
  doc["model"] = "/nonexistent/model";
  const Recipe r = parse_recipe(doc, "r.json");
  EXPECT_NO_THROW(check_recipe(r, 2, /*skip_paths=*/true));
  try {
    check_recipe(r, 2, /*skip_paths=*/false);
    ADD_FAILURE() << "a missing model path passed";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model"), std::string::npos);
  }
  // A missing data source is an error too, unless paths are skipped (files on other machines).
  doc = micro_recipe();
  doc["rounds"][0]["stages"][0]["config"]["data"]["sources"][0]["path"] = "/nonexistent.jsonl";
  const Recipe missing_source = parse_recipe(doc, "r.json");
  EXPECT_NO_THROW(check_recipe(missing_source, 2, /*skip_paths=*/true));
  try {
    check_recipe(missing_source, 2, /*skip_paths=*/false);
    ADD_FAILURE() << "a missing data source passed";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent.jsonl"), std::string::npos) << e.what();
  }
}

TEST(Placeholders, SubstituteRoundAsIntegerAndNamesInText) {
  json v = {{"a", "${round}"}, {"b", "${run_dir}/x-${round}"}, {"c", {"${stage:s}"}}};
  json out = substitute(
      v,
      [](const std::string& name) -> std::optional<std::string> {
        if (name == "round") return std::string("3");
        if (name == "run_dir") return std::string("/r");
        if (name == "stage:s") return std::string("/r/round-3/s");
        return std::nullopt;
      },
      "cfg");
  EXPECT_EQ(out["a"], 3);
  EXPECT_EQ(out["b"], "/r/x-3");
  EXPECT_EQ(out["c"][0], "/r/round-3/s");
  EXPECT_THROW(substitute(json("${policy}"), [](const std::string&) { return std::nullopt; }, "k"),
               InputError);
  EXPECT_THROW(placeholders_in(json("${policy"), "k"), InputError);
}

// ---- the runner through the executable ---------------------------------------------------

class RecipeRun : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("posttrain_recipe_" + std::to_string(::getpid()));
    posttrain::remove_tree(root_.string());
    fs::create_directories(root_);
    recipe_path_ = (root_ / "micro.json").string();
    std::ofstream(recipe_path_) << "// the micro recipe\n" << micro_recipe().dump(2) << "\n";
  }
  void TearDown() override { posttrain::remove_tree(root_.string()); }

  pid_t start(const std::string& out) {
    const std::string log = out + ".log";
    pid_t pid = ::fork();
    if (pid == 0) {
      FILE* f = std::freopen(log.c_str(), "w", stdout);
      (void)f;
      ::dup2(STDOUT_FILENO, STDERR_FILENO);
      ::execl(POSTTRAIN_BIN, POSTTRAIN_BIN, "recipe", "run", recipe_path_.c_str(), "--output",
              out.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    return pid;
  }
  static int wait_for(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  static std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // Everything the store holds about the run, with OUT replaced by "OUT" and no timestamps.
  static std::multiset<std::string> store_rows(const std::string& out) {
    datastore::Store store = datastore::Store::open(out + "/store.db");
    std::multiset<std::string> rows;
    auto rel = [&](std::string p) {
      if (p.rfind(out, 0) == 0) p = "OUT" + p.substr(out.size());
      return p;
    };
    for (const auto& c : store.checkpoints()) {
      std::string parents;
      for (size_t i = 0; i < c.parents.size(); ++i) {
        parents += rel(store.checkpoint(c.parents[i])->path) + "@" +
                   std::to_string(c.weights[i]) + ";";
      }
      rows.insert("ckpt " + rel(c.path) + " " + c.stage + " " + std::to_string(c.round) + " " +
                  parents);
    }
    datastore::Database& db = store.db();
    datastore::Statement stages(db,
        "SELECT r.name, s.round, s.stage FROM run_stages s JOIN runs r ON r.id = s.run_id");
    while (stages.step()) {
      rows.insert("stage " + stages.column_text(0) + " " + std::to_string(stages.column_int(1)) +
                  " " + stages.column_text(2));
    }
    datastore::Statement metrics(db,
        "SELECT r.name, m.name, m.step, m.value FROM metrics m JOIN runs r ON r.id = m.run_id");
    while (metrics.step()) {
      std::ostringstream s;
      s.precision(17);
      s << "metric " << metrics.column_text(0) << " " << metrics.column_text(1) << " "
        << metrics.column_int(2) << " " << metrics.column_double(3);
      if (metrics.column_text(1) == "tokens_per_s" || metrics.column_text(1) == "mfu") continue;
      rows.insert(s.str());
    }
    return rows;
  }

  fs::path root_;
  std::string recipe_path_;
};

TEST_F(RecipeRun, KilledMidRoundThenRerunEqualsAnUninterruptedRun) {
  const std::string clean = (root_ / "clean").string();
  ASSERT_EQ(wait_for(start(clean)), 0) << slurp(clean + ".log");
  EXPECT_TRUE(fs::exists(clean + "/round-1/avg/model.safetensors")) << slurp(clean + ".log");
  EXPECT_NE(slurp(clean + "/rounds.jsonl").find("\"round\":1"), std::string::npos);

  // Kill the runner once round 1's second SFT has started (its first is done).
  const std::string killed = (root_ / "killed").string();
  pid_t pid = start(killed);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  while (!fs::exists(killed + "/round-1/sft_b.config.json") &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(pid, SIGKILL);
  EXPECT_EQ(wait_for(pid), 128 + SIGKILL);
  EXPECT_FALSE(fs::exists(killed + "/round-1/avg/model.safetensors"));

  ASSERT_EQ(wait_for(start(killed)), 0) << slurp(killed + ".log");
  const std::string log = slurp(killed + ".log");
  EXPECT_NE(log.find("sft_a (sft): done earlier"), std::string::npos) << log;

  EXPECT_EQ(slurp(clean + "/round-1/avg/model.safetensors"),
            slurp(killed + "/round-1/avg/model.safetensors"));
  EXPECT_EQ(store_rows(clean), store_rows(killed));
  datastore::Store store = datastore::Store::open(killed + "/store.db");
  EXPECT_EQ(store.integrity_check(), "ok");
  EXPECT_FALSE(store.metrics(store.ensure_run("micro/round-1/sft_b"), std::string("loss")).empty());

  // A third run has nothing left to do.
  ASSERT_EQ(wait_for(start(killed)), 0);
  EXPECT_NE(slurp(killed + ".log").find("0 stages run, 5 done earlier"), std::string::npos)
      << slurp(killed + ".log");
}

}  // namespace
}  // namespace posttrain::recipes
