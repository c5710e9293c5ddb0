// A thin RAII layer over the SQLite C API: Database owns a connection, Statement owns one
// prepared statement (reset and reused, never re-prepared per row), Transaction is a scoped
// BEGIN IMMEDIATE ... COMMIT that rolls back when it goes out of scope uncommitted.
//
// Concurrency: every connection sets busy_timeout, and BEGIN IMMEDIATE is retried with backoff
// on SQLITE_BUSY past that timeout, so several processes can write the same store at once
// (in WAL mode readers never block the single writer). All failures throw DbError naming the
// SQL and SQLite's message.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.h"

struct sqlite3;
struct sqlite3_stmt;

namespace posttrain::datastore {

// A SQLite failure (not bad user input): carries the SQLite result code.
class DbError : public Error {
 public:
  DbError(int code, const std::string& message) : Error(message), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

class Statement;

class Database {
 public:
  struct Options {
    bool read_only = false;
    bool create = true;           // create the file when missing (ignored when read_only)
    int busy_timeout_ms = 10000;  // per attempt; BEGIN IMMEDIATE additionally retries
    int begin_retry_ms = 120000;  // total time BEGIN IMMEDIATE keeps retrying on SQLITE_BUSY
  };

  // Opens `path` (":memory:" works). Throws IoError when the file cannot be opened.
  explicit Database(const std::string& path);
  Database(const std::string& path, const Options& options);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  Database(Database&& other) noexcept;
  Database& operator=(Database&& other) noexcept;

  // Runs one or more statements with no parameters and no result rows.
  void exec(const std::string& sql);
  // Runs a single-row, single-column query (such as a PRAGMA) and returns column 0 as int/text.
  int64_t query_int(const std::string& sql);
  std::string query_text(const std::string& sql);

  // Starts a write transaction (BEGIN IMMEDIATE), retrying on SQLITE_BUSY for up to
  // options.begin_retry_ms. Throws DbError when the lock never frees.
  void begin_immediate();
  void commit();
  void rollback() noexcept;  // no-op when no transaction is open
  bool in_transaction() const;

  int64_t last_insert_rowid() const;
  int changes() const;  // rows changed by the most recent INSERT/UPDATE/DELETE
  const std::string& path() const { return path_; }
  sqlite3* handle() const { return db_; }

  // Throws DbError for result code `rc` (anything but OK/ROW/DONE) with `what` as context.
  void check(int rc, std::string_view what) const;

 private:
  void close() noexcept;

  sqlite3* db_ = nullptr;
  std::string path_;
  Options options_;
};

// A prepared statement. Bind parameters are 1-based as in SQLite. Typical use:
//   stmt.reset(); stmt.bind(1, x); while (stmt.step()) { ... stmt.column_int(0) ... }
// bind_text/bind_blob with a string_view do NOT copy (SQLITE_STATIC): the caller keeps the
// bytes alive until the statement has been stepped to completion or reset.
class Statement {
 public:
  Statement(Database& db, const std::string& sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&&) = delete;

  Statement& reset();  // resets and clears all bindings
  Statement& bind(int index, int64_t value);
  Statement& bind(int index, int value) { return bind(index, static_cast<int64_t>(value)); }
  Statement& bind(int index, double value);
  Statement& bind(int index, std::string_view text);  // no copy (see above)
  Statement& bind(int index, const char* text) { return bind(index, std::string_view(text)); }
  Statement& bind(int index, const std::string& text) {
    return bind(index, std::string_view(text));
  }
  Statement& bind_blob(int index, std::string_view bytes);  // no copy
  Statement& bind_null(int index);
  // Binds NULL when the optional is empty.
  template <typename T>
  Statement& bind(int index, const std::optional<T>& value) {
    return value ? bind(index, *value) : bind_null(index);
  }

  // Advances: true when a row is available, false when done. Throws DbError on failure.
  bool step();
  // Steps a statement that returns no rows (INSERT/UPDATE/DELETE) to completion.
  void run();

  bool column_is_null(int col) const;
  int64_t column_int(int col) const;
  double column_double(int col) const;
  std::string column_text(int col) const;
  std::string_view column_view(int col) const;  // valid until the next step/reset
  std::optional<int64_t> column_opt_int(int col) const;
  std::optional<std::string> column_opt_text(int col) const;

 private:
  Database* db_;
  sqlite3_stmt* stmt_ = nullptr;
  std::string sql_;
};

// Scoped write transaction: BEGIN IMMEDIATE (with retry) on construction, ROLLBACK in the
// destructor unless commit() ran. When the database is already inside a transaction the
// object joins it and commit() does nothing (the outermost owner commits).
class Transaction {
 public:
  explicit Transaction(Database& db);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Database& db_;
  bool owner_ = false;
  bool done_ = false;
};

}  // namespace posttrain::datastore
