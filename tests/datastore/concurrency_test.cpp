// Faults: several processes writing one store at once lose no row and make no duplicate, and a
// process SIGKILLed in the middle of a large import leaves a store that passes integrity_check
// and holds all of that import or none of it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "datastore/import.h"
#include "datastore/store.h"
#include "tests/datastore/test_util.h"

namespace posttrain::datastore {
namespace {

using testing::TempDir;
using testing::write_file;

std::string pair_line(const std::string& prompt) {
  return Json{{"prompt", prompt}, {"chosen", "yes " + prompt}, {"rejected", "no " + prompt}}
             .dump() +
         "\n";
}

// Child body: insert `shared` pairs every worker also inserts, then `own` pairs of its own, in
// transactions of 10 so the workers interleave. Exit status 0 on success.
int worker(const std::string& path, int index, int shared, int own) {
  try {
    auto store = Store::open(path);
    auto add = [&](const std::string& prompt) {
      int64_t p = store.add_prompt(prompt);
      NewResponse r;
      r.prompt_id = p;
      r.content = "yes " + prompt;
      int64_t c = store.add_response(r);
      r.content = "no " + prompt;
      int64_t x = store.add_response(r);
      store.add_pair({p, c, x, std::nullopt, std::nullopt, "w" + std::to_string(index), "", 0});
    };
    for (int start = 0; start < shared + own; start += 10) {
      auto tx = store.transaction();
      for (int i = start; i < std::min(start + 10, shared + own); ++i) {
        add(i < shared ? "shared " + std::to_string(i)
                       : "own " + std::to_string(index) + " " + std::to_string(i));
      }
      tx.commit();
    }
    return 0;
  } catch (const std::exception& e) {
    fprintf(stderr, "worker %d: %s\n", index, e.what());
    return 1;
  }
}

TEST(Concurrency, ForkedWritersLoseNoRowAndMakeNoDuplicate) {
  TempDir dir;
  const std::string path = dir / "s.db";  // not created yet: the workers race to create it
  const int kWorkers = 4, kShared = 120, kOwn = 120;
  std::vector<pid_t> kids;
  for (int w = 0; w < kWorkers; ++w) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) _exit(worker(path, w, kShared, kOwn));
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "worker failed";
  }
  auto store = Store::open(path);
  EXPECT_EQ(store.count_pairs(), kShared + kWorkers * kOwn);
  EXPECT_EQ(store.prompt_ids().size(), static_cast<size_t>(kShared + kWorkers * kOwn));
  EXPECT_EQ(store.db().query_int("SELECT count(*) FROM responses"),
            2 * (kShared + kWorkers * kOwn));
  EXPECT_EQ(store.db().query_int("SELECT count(*) FROM (SELECT DISTINCT prompt_id, chosen_id,"
                                 " rejected_id FROM preference_pairs)"),
            store.count_pairs());
  EXPECT_EQ(store.integrity_check(), "ok");
}

TEST(Concurrency, ParallelCliImportsLoseNoRow) {
  TempDir dir;
  const int kProcs = 4, kShared = 200, kOwn = 200;
  std::string script;
  for (int p = 0; p < kProcs; ++p) {
    std::string text;
    for (int i = 0; i < kShared; ++i) text += pair_line("shared " + std::to_string(i));
    for (int i = 0; i < kOwn; ++i)
      text += pair_line("own " + std::to_string(p) + "/" + std::to_string(i));
    std::string file = dir / ("part" + std::to_string(p) + ".jsonl");
    write_file(file, text);
    script += "('" + std::string(POSTTRAIN_BIN) + "' store import --store '" + (dir / "s.db") +
              "' --format trl '" + file + "' >/dev/null 2>'" + file + ".err'; echo $? >'" + file +
              ".rc') & ";
  }
  script += "wait";
  ASSERT_EQ(std::system(("bash -c \"" + script + "\"").c_str()), 0);
  for (int p = 0; p < kProcs; ++p) {
    std::string file = dir / ("part" + std::to_string(p) + ".jsonl");
    EXPECT_EQ(testing::read_file(file + ".rc"), "0\n") << testing::read_file(file + ".err");
  }
  auto store = Store::open(dir / "s.db");
  EXPECT_EQ(store.count_pairs(), kShared + kProcs * kOwn);
  EXPECT_EQ(store.integrity_check(), "ok");
}

TEST(Crash, SigkillMidImportLeavesAllOrNothing) {
  TempDir dir;
  const std::string path = dir / "s.db";
  const int kBefore = 50, kBig = 12000;
  std::string small, big;
  for (int i = 0; i < kBefore; ++i) small += pair_line("before " + std::to_string(i));
  for (int i = 0; i < kBig; ++i)
    big += pair_line("big " + std::to_string(i) + std::string(200, 'x'));
  write_file(dir / "small.jsonl", small);
  write_file(dir / "big.jsonl", big);
  {
    auto store = Store::open(path);
    import_jsonl(store, dir / "small.jsonl", {});
  }
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(ready[0]);
    Store::Options small_cache;
    small_cache.cache_kib = 256;  // spill uncommitted pages into the WAL before the kill
    auto store = Store::open(path, small_cache);
    ImportOptions opt;
    opt.progress_every = 3000;
    opt.on_progress = [&](int64_t lines) {
      if (lines == 3000) {
        char c = 1;
        (void)!write(ready[1], &c, 1);
      }
    };
    import_jsonl(store, dir / "big.jsonl", opt);
    _exit(0);
  }
  close(ready[1]);
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);  // the child is 3000 lines into the import
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  close(ready[0]);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_GT(testing::read_file(path + "-wal").size(), 0u);  // it had written uncommitted pages

  auto store = Store::open(path);
  EXPECT_EQ(store.integrity_check(), "ok");
  int64_t n = store.count_pairs();
  EXPECT_TRUE(n == kBefore || n == kBefore + kBig) << n << " pairs after the crash";
  EXPECT_EQ(store.db().query_int("SELECT count(*) FROM prompts"), n);
  // The store still works: the same import now succeeds completely.
  auto s = import_jsonl(store, dir / "big.jsonl", {});
  EXPECT_EQ(store.count_pairs(), kBefore + kBig);
  EXPECT_EQ(s.imported + s.duplicates, kBig);
}

}  // namespace
}  // namespace posttrain::datastore
