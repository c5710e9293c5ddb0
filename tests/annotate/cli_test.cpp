// The `posttrain annotate` command: add-user, stats, and serve started and stopped by signal.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <thread>

#include "annotate_test_util.h"
#include "common/sha256.h"

namespace posttrain::annotate {
namespace {

using datastore::testing::read_file;
using datastore::testing::run_cli;
using testing::TempDir;

TEST(AnnotateCli, AddUserPrintsATokenOnceAndStoresOnlyItsHash) {
  TempDir dir;
  const std::string db = dir / "s.db";
  auto r = run_cli("annotate add-user alice --store " + db, dir.path());
  ASSERT_EQ(r.status, 0) << r.err;
  std::string token = r.out.substr(0, r.out.find('\n'));
  EXPECT_TRUE(std::regex_match(token, std::regex("[0-9a-f]{64}"))) << token;
  {
    auto store = datastore::Store::open(db);
    EXPECT_EQ(store.db().query_text("SELECT token_sha256 FROM annotators"), sha256_hex(token));
    store.db().exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  EXPECT_EQ(read_file(db).find(token), std::string::npos);
  // A second user gets another token; a taken name is refused.
  auto bob = run_cli("annotate add-user bob --store " + db, dir.path());
  ASSERT_EQ(bob.status, 0);
  EXPECT_NE(bob.out.substr(0, 64), token);
  auto again = run_cli("annotate add-user alice --store " + db, dir.path());
  EXPECT_NE(again.status, 0);
  EXPECT_NE(again.err.find("already exists"), std::string::npos) << again.err;
  auto bad = run_cli("annotate add-user 'a,b' --store " + db, dir.path());
  EXPECT_NE(bad.status, 0);
}

TEST(AnnotateCli, StatsReportsJudgementsAsJson) {
  TempDir dir;
  const std::string db = dir / "s.db";
  ASSERT_EQ(run_cli("annotate add-user alice --store " + db, dir.path()).status, 0);
  auto r = run_cli("annotate stats --json --store " + db, dir.path());
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["judgements"], 0);
  EXPECT_EQ(j["by_annotator"]["alice"]["skips"], 0);
  EXPECT_TRUE(j["agreement"]["kappa"].is_null());
  EXPECT_NE(run_cli("annotate stats --store " + (dir / "missing.db"), dir.path()).status, 0);
  EXPECT_NE(run_cli("annotate frobnicate --store " + db, dir.path()).status, 0);
}

// Starts `posttrain annotate serve` on port 0, reads the JSON line it prints, asks it for the
// page, then stops it with SIGTERM: it must exit 0 within seconds.
TEST(AnnotateCli, ServeListensOnAFreePortAndStopsOnSigterm) {
  TempDir dir;
  const std::string db = dir / "s.db";
  {
    auto store = datastore::Store::open(db);
    testing::add_candidates(store, 3);
  }
  const std::string out = dir / "serve.out";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    freopen(out.c_str(), "w", stdout);
    freopen((dir / "serve.err").c_str(), "w", stderr);
    execl(POSTTRAIN_BIN, POSTTRAIN_BIN, "annotate", "serve", "--store", db.c_str(), "--port", "0",
          "--agreement", "0", "--seed", "3", static_cast<char*>(nullptr));
    _exit(127);
  }
  nlohmann::json info;
  for (int i = 0; i < 200 && info.is_null(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::string text = read_file(out);
    if (text.find('\n') != std::string::npos)
      info = nlohmann::json::parse(text.substr(0, text.find('\n')));
  }
  ASSERT_FALSE(info.is_null()) << read_file(dir / "serve.err");
  EXPECT_EQ(info["tasks_added"], 3);
  EXPECT_EQ(info["round"], 1);
  const int port = info["port"];
  EXPECT_GT(port, 0);
  EXPECT_EQ(info["url"], "http://127.0.0.1:" + std::to_string(port) + "/");
  httplib::Client cli("127.0.0.1", port);
  auto page = cli.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  auto api = cli.Get("/api/task");
  ASSERT_TRUE(api);
  EXPECT_EQ(api->status, 401);
  kill(pid, SIGTERM);
  int status = -1;
  for (int i = 0; i < 200; ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!WIFEXITED(status)) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    FAIL() << "serve did not stop within 10 s of SIGTERM";
  }
  EXPECT_EQ(WEXITSTATUS(status), 0) << read_file(dir / "serve.err");
}

}  // namespace
}  // namespace posttrain::annotate
