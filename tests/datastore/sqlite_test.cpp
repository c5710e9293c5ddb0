// The RAII SQLite layer and the schema/migration rules.
#include "datastore/sqlite.h"

#include <gtest/gtest.h>

#include <filesystem>

#include <thread>

#include "datastore/schema.h"
#include "datastore/store.h"
#include "tests/datastore/test_util.h"

namespace posttrain::datastore {
namespace {

using testing::TempDir;

TEST(Sqlite, StatementBindsStepsAndIsReused) {
  Database db(":memory:");
  db.exec("CREATE TABLE t(a INTEGER, b TEXT, c REAL, d BLOB)");
  Statement ins(db, "INSERT INTO t VALUES (?, ?, ?, ?)");
  for (int i = 0; i < 3; ++i) {
    std::string text = "row'" + std::to_string(i) + "\"; DROP TABLE t; --";
    ins.reset().bind(1, i).bind(2, text).bind(3, i * 0.5).bind_blob(4, std::string("\0x", 2));
    ins.run();
  }
  Statement sel(db, "SELECT a, b, c, length(d) FROM t ORDER BY a");
  int n = 0;
  while (sel.step()) {
    EXPECT_EQ(sel.column_int(0), n);
    EXPECT_EQ(sel.column_text(1), "row'" + std::to_string(n) + "\"; DROP TABLE t; --");
    EXPECT_DOUBLE_EQ(sel.column_double(2), n * 0.5);
    EXPECT_EQ(sel.column_int(3), 2);
    ++n;
  }
  EXPECT_EQ(n, 3);
}

TEST(Sqlite, ErrorsNameTheStatement) {
  Database db(":memory:");
  try {
    Statement s(db, "SELEKT 1");
    FAIL() << "prepare should throw";
  } catch (const DbError& e) {
    EXPECT_NE(std::string(e.what()).find("SELEKT"), std::string::npos) << e.what();
  }
}

TEST(Sqlite, TransactionRollsBackUnlessCommitted) {
  Database db(":memory:");
  db.exec("CREATE TABLE t(a)");
  {
    Transaction tx(db);
    db.exec("INSERT INTO t VALUES (1)");
  }
  EXPECT_EQ(db.query_int("SELECT count(*) FROM t"), 0);
  {
    Transaction tx(db);
    db.exec("INSERT INTO t VALUES (1)");
    {
      Transaction inner(db);  // joins: its commit does not end the outer transaction
      db.exec("INSERT INTO t VALUES (2)");
      inner.commit();
    }
    EXPECT_TRUE(db.in_transaction());
    tx.commit();
  }
  EXPECT_FALSE(db.in_transaction());
  EXPECT_EQ(db.query_int("SELECT count(*) FROM t"), 2);
}

TEST(Sqlite, BeginImmediateWaitsForAnotherWriter) {
  TempDir dir;
  Database::Options quick;
  quick.busy_timeout_ms = 20;  // shorter than the hold below: the retry loop must cover it
  Database a(dir / "db.sqlite"), b(dir / "db.sqlite", quick);
  a.exec("PRAGMA journal_mode = WAL; CREATE TABLE t(x)");
  a.begin_immediate();
  a.exec("INSERT INTO t VALUES (1)");
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    a.commit();
  });
  auto start = std::chrono::steady_clock::now();
  b.begin_immediate();  // blocks until `a` commits
  auto waited = std::chrono::steady_clock::now() - start;
  b.exec("INSERT INTO t VALUES (2)");
  b.commit();
  release.join();
  EXPECT_GE(waited, std::chrono::milliseconds(200));
  EXPECT_EQ(b.query_int("SELECT count(*) FROM t"), 2);
}

TEST(Schema, FreshStoreGetsTheCurrentVersionAndWal) {
  TempDir dir;
  auto store = Store::open(dir / "s.db");
  EXPECT_EQ(store.schema_version(), kSchemaVersion);
  EXPECT_EQ(store.db().query_text("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(store.db().query_int("PRAGMA foreign_keys"), 1);
  EXPECT_EQ(store.db().query_int("PRAGMA application_id"), kApplicationId);
  EXPECT_EQ(
      store.db().query_int("SELECT count(*) FROM sqlite_master WHERE name = 'preference_pairs'"),
      1);
}

TEST(Schema, OlderStoreIsMigratedForwardKeepingItsRows) {
  TempDir dir;
  {
    Database db(dir / "s.db");
    migrate(db, 1);
    EXPECT_EQ(schema_version(db), 1);
    db.exec("INSERT INTO prompts(hash, shape, body) VALUES (x'01', 'text', '\"old\"')");
    EXPECT_EQ(db.query_int("SELECT count(*) FROM sqlite_master WHERE name = 'dialogues'"), 0);
  }
  auto store = Store::open(dir / "s.db");
  EXPECT_EQ(store.schema_version(), kSchemaVersion);
  EXPECT_EQ(store.prompt_content(1), "old");
  EXPECT_GT(store.add_kept_dialogue(
                {Json::parse(R"([{"role":"user","content":"x"}])"), std::nullopt, "", 0}),
            0);
}

TEST(Schema, NewerStoreIsRefusedWithAClearMessage) {
  TempDir dir;
  { auto store = Store::open(dir / "s.db"); }
  {
    Database db(dir / "s.db");
    db.exec("PRAGMA user_version = " + std::to_string(kSchemaVersion + 1));
  }
  try {
    Store::open(dir / "s.db");
    FAIL() << "a newer store must be refused";
  } catch (const UsageError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("newer"), std::string::npos) << m;
    EXPECT_NE(m.find(std::to_string(kSchemaVersion + 1)), std::string::npos) << m;
  }
}

TEST(Schema, ForeignSqliteFileIsRefused) {
  TempDir dir;
  {
    Database db(dir / "other.db");
    db.exec("CREATE TABLE notes(x)");
  }
  EXPECT_THROW(Store::open(dir / "other.db"), UsageError);
  testing::write_file(dir / "junk.db", std::string(4096, 'x'));
  EXPECT_THROW(Store::open(dir / "junk.db"), Error);
}

// Readers (sft's data.store, exports) open read-only: an empty file is "no store", not a store
// to migrate, and it is left as it was.
TEST(Schema, EmptyFileOpenedReadOnlyIsNoStore) {
  TempDir dir;
  testing::write_file(dir / "empty.db", "");
  Store::Options opts;
  opts.read_only = true;
  try {
    Store::open(dir / "empty.db", opts);
    FAIL() << "an empty file must be refused";
  } catch (const UsageError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("no posttrain store"), std::string::npos) << m;
    EXPECT_NE(m.find("empty.db"), std::string::npos) << m;
  }
  EXPECT_EQ(std::filesystem::file_size(dir / "empty.db"), 0u);
}

}  // namespace
}  // namespace posttrain::datastore
