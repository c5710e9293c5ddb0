// SIGKILL in the middle of `posttrain sample`, then the same command again: the store ends
// row for row (timestamps aside) as an uninterrupted run's, and candidates.jsonl byte for byte.
// The kill lands after some prompts are committed (polled in the store) and before the last.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "tests/rejection_sampling/sample_test_util.h"

namespace fs = std::filesystem;

namespace posttrain::rejection_sampling {
namespace {

using testing::Json;
using testing::query;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Committed prompts: the done-markers of the run (one per prompt, in its transaction).
int64_t committed(const std::string& db) {
  const auto rows = query(db, "SELECT count(*) AS n FROM run_stages");
  return rows.empty() ? 0 : rows[0]["n"].get<int64_t>();
}

TEST(SampleResume, SigkillThenRerunEqualsAnUninterruptedRun) {
  const std::string root =
      (fs::temp_directory_path() / ("posttrain_sample_resume_" + std::to_string(::getpid())))
          .string();
  posttrain::remove_tree(root);
  fs::create_directories(root);
  auto r = posttrain::testing::run_cli("init --preset tiny --seed 5 --output " + root + "/policy");
  ASSERT_EQ(r.code, 0) << r.output;
  r = posttrain::testing::run_cli("init --preset tiny --seed 6 --reward-model --output " + root +
                                  "/rm");
  ASSERT_EQ(r.code, 0) << r.output;
  constexpr int kPrompts = 12;
  std::vector<Json> prompts;
  for (int i = 0; i < kPrompts; ++i) {
    Json row = {{"id", "p" + std::to_string(i)},
                {"prompt", "What is " + std::to_string(i) + " + 1?"}};
    if (i % 2 == 0) {
      row["kind"] = "math";
      row["answer"] = i + 1;
    }
    prompts.push_back(row);
  }
  testing::write_jsonl(root + "/prompts.jsonl", prompts);
  auto config = [&](const std::string& name) {
    // One prompt per engine call, so prompts commit one by one while the run goes on.
    Json c = {{"model", {{"path", root + "/policy"}}},
              {"reward_model", {{"path", root + "/rm"}}},
              {"prompts", {{"path", root + "/prompts.jsonl"}}},
              {"sampling",
               {{"samples", 4},
                {"max_new_tokens", 24},
                {"seed", 11},
                {"system_prompts", {"Be brief.", "Show your work."}}}},
              {"ranking", {{"order", {"verified", "reward"}}, {"require_verified", false}}},
              {"output",
               {{"store", root + "/" + name + ".db"}, {"round", 2}, {"dir", root + "/" + name}}},
              {"engine", {{"kv_cache_mb", 16}, {"chunk_prompts", 1}}}};
    const std::string path = root + "/" + name + ".json";
    std::ofstream(path) << c.dump(2);
    return path;
  };

  r = posttrain::testing::run_cli("sample --config " + config("whole"));
  ASSERT_EQ(r.code, 0) << r.output;
  ASSERT_EQ(committed(root + "/whole.db"), kPrompts);

  const std::string killed_cfg = config("killed");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::freopen("/dev/null", "w", stderr);
    ::execl(POSTTRAIN_BIN, POSTTRAIN_BIN, "sample", "--config", killed_cfg.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int64_t at_kill = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    at_kill = committed(root + "/killed.db");
    if (at_kill >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run ended before the kill";
  const int64_t after_kill = committed(root + "/killed.db");
  ASSERT_GE(after_kill, 2);
  ASSERT_LT(after_kill, kPrompts) << "the run finished before the kill: make it longer";

  r = posttrain::testing::run_cli("sample --config " + killed_cfg);
  ASSERT_EQ(r.code, 0) << r.output;
  const Json summary = Json::parse(std::ifstream(root + "/killed/summary.json"));
  EXPECT_EQ(summary["skipped"], after_kill);
  EXPECT_EQ(summary["prompts"], kPrompts - after_kill);

  const auto whole = testing::dump_store(root + "/whole.db");
  const auto killed = testing::dump_store(root + "/killed.db");
  ASSERT_EQ(whole.size(), killed.size());
  for (const auto& [table, rows] : whole) {
    ASSERT_TRUE(killed.count(table)) << table;
    EXPECT_EQ(rows.size(), killed.at(table).size()) << table;
    for (size_t i = 0; i < std::min(rows.size(), killed.at(table).size()); ++i) {
      EXPECT_EQ(rows[i], killed.at(table)[i]) << table << " row " << i;
    }
  }
  EXPECT_EQ(whole.at("responses").size() > 0, true);
  EXPECT_EQ(slurp(root + "/whole/candidates.jsonl"), slurp(root + "/killed/candidates.jsonl"));
  posttrain::remove_tree(root);
}

}  // namespace
}  // namespace posttrain::rejection_sampling
