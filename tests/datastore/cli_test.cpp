// `posttrain store ...` end to end through the built binary (POSTTRAIN_BIN): the flag names are
// contracts, errors are one line naming file, line and field, and exit codes are 0/1/2.
#include <gtest/gtest.h>

#include <filesystem>

#include "datastore/store.h"
#include "tests/datastore/test_util.h"

namespace posttrain::datastore {
namespace {

using testing::read_file;
using testing::read_lines;
using testing::run_cli;
using testing::TempDir;
using testing::write_file;

TEST(StoreCli, InitImportStatsPairsExport) {
  TempDir dir;
  std::string db = dir / "s.db";
  auto r = run_cli("store init --store " + db, dir.path());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("schema version"), std::string::npos);
  write_file(dir / "a.jsonl",
             R"({"prompt":"P1","chosen":"c","rejected":"r","strength":"better","annotator":"ann"})"
             "\n"
             R"({"prompt":"P2","chosen":"c","rejected":"r","strength":"slightly_better"})"
             "\n");
  r = run_cli("store import --store " + db + " --format annotations --round 2 --source vendor " +
                  (dir / "a.jsonl"),
              dir.path());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("imported 2 pairs, 0 duplicates, 0 skipped", 0), 0u) << r.out;

  r = run_cli("store stats --store " + db + " --json", dir.path());
  ASSERT_EQ(r.status, 0) << r.err;
  Json st = Json::parse(r.out);
  EXPECT_EQ(st["tables"]["preference_pairs"], 2);
  EXPECT_EQ(st["pairs_by_round"]["2"], 2);
  EXPECT_EQ(st["pairs_by_source"]["vendor"], 2);
  EXPECT_EQ(st["pairs_by_strength"]["better"], 1);

  r = run_cli("store pairs --store " + db + " --min-strength better", dir.path());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("P1"), std::string::npos);
  EXPECT_EQ(r.out.find("P2"), std::string::npos);
  EXPECT_NE(r.out.find("1 pair(s)"), std::string::npos);
  r = run_cli("store pairs --store " + db + " --id 2", dir.path());
  ASSERT_EQ(r.status, 0) << r.err;
  Json one = Json::parse(r.out);
  EXPECT_EQ(one["prompt"], "P2");
  EXPECT_EQ(one["strength"], "slightly_better");
  EXPECT_EQ(run_cli("store pairs --store " + db + " --id 99", dir.path()).status, 2);

  r = run_cli("store export --store " + db + " --format openrlhf --prompt-key q --out " +
                  (dir / "o.jsonl") + " --round 2 --round 5 --annotator ann",
              dir.path());
  ASSERT_EQ(r.status, 0) << r.err;
  // OpenRLHF's rows are message lists (for --apply_chat_template), with the strength label.
  ASSERT_EQ(read_lines(dir / "o.jsonl").size(), 1u);
  EXPECT_EQ(Json::parse(read_lines(dir / "o.jsonl")[0]),
            Json::parse(R"({"q":[{"role":"user","content":"P1"}],
                "chosen":[{"role":"assistant","content":"c"}],
                "rejected":[{"role":"assistant","content":"r"}],"strength":"better"})"));
  r = run_cli(
      "store export --store " + db + " --format trl --as messages --output " + (dir / "m.jsonl"),
      dir.path());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read_lines(dir / "m.jsonl").size(), 2u);
  EXPECT_TRUE(Json::parse(read_lines(dir / "m.jsonl")[0])["prompt"].is_array());
  r = run_cli(
      "store export --store " + db + " --format messages --as text --out " + (dir / "d.jsonl"),
      dir.path());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("pair formats only"), std::string::npos) << r.err;
  // stdout export and stdin import.
  r = run_cli("store export --store " + db + " --format trl --min-strength better --out -",
              dir.path());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, R"({"prompt":"P1","chosen":"c","rejected":"r","strength":"better"})"
                   "\n");
  r = run_cli("store import --store " + db + " --format trl - < " + (dir / "m.jsonl"), dir.path());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("imported 2 pairs, 0 duplicates", 0), 0u) << r.out;
}

TEST(StoreCli, BadLineRollsBackAndNamesFileLineField) {
  TempDir dir;
  std::string db = dir / "s.db";
  std::string in = dir / "bad.jsonl";
  write_file(in, R"({"prompt":"ok","chosen":"a","rejected":"b"})"
                 "\n"
                 R"({"prompt":"p","chosen":"a"})"
                 "\n"
                 R"({"prompt":"ok2","chosen":"a","rejected":"b"})"
                 "\n");
  auto r = run_cli("store import --store " + db + " --format trl " + in, dir.path());
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "posttrain store: error: " + in + ":2: field 'rejected': missing\n");
  EXPECT_EQ(Store::open(db).count_pairs(), 0);

  r = run_cli("store import --store " + db + " --format trl --skip-bad " + in, dir.path());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "skipped: " + in + ":2: field 'rejected': missing\n");
  EXPECT_EQ(r.out.rfind("imported 2 pairs, 0 duplicates, 1 skipped (3 lines", 0), 0u) << r.out;
  EXPECT_EQ(Store::open(db).count_pairs(), 2);
}

TEST(StoreCli, UsageErrorsExitTwo) {
  TempDir dir;
  std::string db = dir / "s.db";
  struct Case {
    std::string args, says;
  };
  std::vector<Case> cases = {
      {"store stats --store " + db, "no store at"},
      {"store frobnicate", "unknown store command"},
      {"store import --store " + db + " --format csv x.jsonl", "unknown import format"},
      {"store import --store " + db + " x.jsonl", "format"},
      {"store export --store " + db + " --format trl", "--output is required"},
      {"store export --store " + db + " --format trl --out o --min-strength huge", "min-strength"},
      {"store export --store " + db + " --format trl --out o --prompt-key q", "openrlhf only"},
      {"store export --store " + db + " --format trl --out o --as yaml", "unknown shape"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    auto r = run_cli(c.args, dir.path());
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
  }
  auto r = run_cli("store import --store " + db + " --format trl " + (dir / "missing.jsonl"),
                   dir.path());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("cannot open"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(db)) << "a failed import created the store";
  EXPECT_EQ(run_cli("store import --help", dir.path()).status, 0);
}

// `store --help` gives one line per subcommand, and every one it names runs.
TEST(StoreCli, HelpListsEachSubcommandOnOneLine) {
  TempDir dir;
  auto r = run_cli("store --help", dir.path());
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* sub : {"init", "stats", "pairs", "import", "export", "select"}) {
    SCOPED_TRACE(sub);
    const std::string line = std::string("\n  ") + sub + " ";
    EXPECT_NE(r.out.find(line), std::string::npos) << r.out;
    EXPECT_EQ(run_cli(std::string("store ") + sub + " --help", dir.path()).status, 0);
  }
}

// `store select` makes imported dialogues a round's SFT data, with filters, idempotently.
TEST(StoreCli, SelectMakesDialoguesARoundsData) {
  TempDir dir;
  std::string db = dir / "s.db";
  std::string fx = std::string(POSTTRAIN_FIXTURES) + "/datastore/";
  ASSERT_EQ(run_cli("store import --store " + db + " --format messages " + fx + "messages.jsonl",
                    dir.path())
                .status,
            0);
  auto r = run_cli("store select --store " + db + " --round 1 --kind math", dir.path());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("selected 0 dialogues for round 1 (0 matched", 0), 0u) << r.out;
  r = run_cli("store select --store " + db + " --round 1 --kind none --source messages",
              dir.path());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("selected 2 dialogues for round 1 (2 matched, 0 already", 0), 0u)
      << r.out;
  r = run_cli("store select --store " + db + " --round 1", dir.path());
  EXPECT_EQ(r.out.rfind("selected 0 dialogues for round 1 (2 matched, 2 already", 0), 0u)
      << r.out;
  auto store = Store::open(db);
  EXPECT_EQ(store.selected_samples(1).size(), 2u);
  EXPECT_TRUE(store.selected_samples(0).empty());
  EXPECT_EQ(run_cli("store select --store " + db, dir.path()).status, 2);
  EXPECT_EQ(run_cli("store select --store " + (dir / "none.db") + " --round 0", dir.path()).status,
            2);
}

}  // namespace
}  // namespace posttrain::datastore

namespace posttrain::datastore {
namespace {

// Every --format on its fixture; counts derived by hand from tests/fixtures/datastore/*.jsonl.
TEST(StoreCli, EveryImportFormatOnItsFixture) {
  testing::TempDir dir;
  std::string db = dir / "s.db";
  std::string fx = std::string(POSTTRAIN_FIXTURES) + "/datastore/";
  struct Case {
    std::string format, file, summary;
  };
  std::vector<Case> cases = {
      {"hh-rlhf", "hh_rlhf.jsonl", "imported 2 pairs, 0 duplicates, 0 skipped"},
      // 3 responses -> 3 ordered pairs; 2 responses -> 1 pair.
      {"ranking", "ranking.jsonl", "imported 4 pairs, 0 duplicates, 0 skipped"},
      {"annotations", "annotations.jsonl", "imported 3 pairs, 0 duplicates, 0 skipped"},
      {"messages", "messages.jsonl", "imported 2 dialogues, 0 duplicates, 0 skipped"},
  };
  for (const auto& c : cases) {
    auto r = testing::run_cli(
        "store import --store " + db + " --format " + c.format + " " + fx + c.file, dir.path());
    EXPECT_EQ(r.status, 0) << c.format << ": " << r.err;
    EXPECT_EQ(r.out.rfind(c.summary, 0), 0u) << c.format << ": " << r.out;
  }
  auto store = Store::open(db);
  EXPECT_EQ(store.count_pairs(), 9);
  PairFilter by_source;
  by_source.source = "vendor-b";
  auto vendor = store.pairs(by_source);
  ASSERT_EQ(vendor.size(), 1u);
  EXPECT_EQ(vendor[0].round, 3);
  EXPECT_EQ(vendor[0].strength, Strength::kMarginallyBetter);
  // The expanded ranking export of the French row: edit > Bonjour, edit > Hola, Bonjour > Hola.
  auto r = testing::run_cli("store export --store " + db + " --format trl --expand-rankings " +
                                "--source ranking --out " + (dir / "x.jsonl"),
                            dir.path());
  ASSERT_EQ(r.status, 0) << r.err;
  auto lines = testing::read_lines(dir / "x.jsonl");
  ASSERT_EQ(lines.size(), 6u);  // 3 pairs of the prime row, 3 of the French row
  EXPECT_EQ(Json::parse(lines[3])["chosen"][0]["content"], "Bonjour !");
  EXPECT_EQ(Json::parse(lines[3])["rejected"][0]["content"], "Bonjour");
  EXPECT_EQ(Json::parse(lines[5])["chosen"][0]["content"], "Bonjour");
  r = testing::run_cli(
      "store export --store " + db + " --format messages --out " + (dir / "m.jsonl"), dir.path());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(testing::read_lines(dir / "m.jsonl").size(), 2u);
}

}  // namespace
}  // namespace posttrain::datastore
