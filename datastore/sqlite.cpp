// RAII SQLite connection/statement/transaction (see sqlite.h).
#include "datastore/sqlite.h"

#include <sqlite3.h>

#include <chrono>
#include <thread>

namespace posttrain::datastore {

Database::Database(const std::string& path) : Database(path, Options{}) {}

Database::Database(const std::string& path, const Options& options)
    : path_(path), options_(options) {
  int flags = options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  if (!options.read_only && options.create) flags |= SQLITE_OPEN_CREATE;
  flags |= SQLITE_OPEN_NOMUTEX;  // one connection per thread
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    close();
    throw IoError("cannot open store " + path + ": " + msg);
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, options.busy_timeout_ms);
}

Database::~Database() { close(); }

Database::Database(Database&& other) noexcept
    : db_(other.db_), path_(std::move(other.path_)), options_(other.options_) {
  other.db_ = nullptr;
}

Database& Database::operator=(Database&& other) noexcept {
  if (this != &other) {
    close();
    db_ = other.db_;
    path_ = std::move(other.path_);
    options_ = other.options_;
    other.db_ = nullptr;
  }
  return *this;
}

void Database::close() noexcept {
  if (db_) {
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }
}

void Database::check(int rc, std::string_view what) const {
  if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) return;
  std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  throw DbError(rc, "store " + path_ + ": " + std::string(what) + ": " + msg);
}

void Database::exec(const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw DbError(rc, "store " + path_ + ": " + msg + " (in: " + sql.substr(0, 80) + ")");
  }
}

int64_t Database::query_int(const std::string& sql) {
  Statement s(*this, sql);
  if (!s.step()) throw DbError(SQLITE_ERROR, "store " + path_ + ": no row from " + sql);
  return s.column_int(0);
}

std::string Database::query_text(const std::string& sql) {
  Statement s(*this, sql);
  if (!s.step()) throw DbError(SQLITE_ERROR, "store " + path_ + ": no row from " + sql);
  return s.column_text(0);
}

void Database::begin_immediate() {
  // busy_timeout already waits inside each attempt; this loop covers the cases where SQLite
  // returns SQLITE_BUSY at once (deadlock avoidance, WAL recovery by another connection).
  auto start = std::chrono::steady_clock::now();
  int sleep_ms = 1;
  while (true) {
    int rc = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) return;
    int primary = rc & 0xff;
    if (primary != SQLITE_BUSY && primary != SQLITE_LOCKED) check(rc, "BEGIN IMMEDIATE");
    auto waited = std::chrono::steady_clock::now() - start;
    if (waited > std::chrono::milliseconds(options_.begin_retry_ms)) {
      throw DbError(rc, "store " + path_ + ": still locked by another writer after " +
                            std::to_string(options_.begin_retry_ms / 1000) + " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    sleep_ms = std::min(sleep_ms * 2, 100);
  }
}

void Database::commit() {
  // COMMIT may meet SQLITE_BUSY only in rollback-journal mode; retrying is still correct.
  auto start = std::chrono::steady_clock::now();
  while (true) {
    int rc = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) return;
    if ((rc & 0xff) != SQLITE_BUSY || std::chrono::steady_clock::now() - start >
                                          std::chrono::milliseconds(options_.begin_retry_ms)) {
      check(rc, "COMMIT");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void Database::rollback() noexcept {
  if (in_transaction()) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

bool Database::in_transaction() const { return db_ && !sqlite3_get_autocommit(db_); }

int64_t Database::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }

int Database::changes() const { return sqlite3_changes(db_); }

// ---- Statement ----------------------------------------------------------------------------

Statement::Statement(Database& db, const std::string& sql) : db_(&db), sql_(sql) {
  int rc = sqlite3_prepare_v3(db.handle(), sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  db.check(rc, "prepare '" + sql.substr(0, 80) + "'");
}

Statement::~Statement() {
  if (stmt_) sqlite3_finalize(stmt_);
}

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_), stmt_(other.stmt_), sql_(std::move(other.sql_)) {
  other.stmt_ = nullptr;
}

Statement& Statement::reset() {
  sqlite3_reset(stmt_);  // its return code repeats the last step's error, already reported
  sqlite3_clear_bindings(stmt_);
  return *this;
}

Statement& Statement::bind(int index, int64_t value) {
  db_->check(sqlite3_bind_int64(stmt_, index, value), "bind");
  return *this;
}

Statement& Statement::bind(int index, double value) {
  db_->check(sqlite3_bind_double(stmt_, index, value), "bind");
  return *this;
}

Statement& Statement::bind(int index, std::string_view text) {
  db_->check(
      sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_STATIC, SQLITE_UTF8),
      "bind");
  return *this;
}

Statement& Statement::bind_blob(int index, std::string_view bytes) {
  db_->check(sqlite3_bind_blob64(stmt_, index, bytes.data(), bytes.size(), SQLITE_STATIC), "bind");
  return *this;
}

Statement& Statement::bind_null(int index) {
  db_->check(sqlite3_bind_null(stmt_, index), "bind");
  return *this;
}

bool Statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  std::string what = "'" + sql_.substr(0, 80) + "'";
  sqlite3_reset(stmt_);
  db_->check(rc, what);
  return false;
}

void Statement::run() {
  while (step()) {
  }
}

bool Statement::column_is_null(int col) const {
  return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
}

int64_t Statement::column_int(int col) const { return sqlite3_column_int64(stmt_, col); }

double Statement::column_double(int col) const { return sqlite3_column_double(stmt_, col); }

std::string_view Statement::column_view(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_blob(stmt_, col));
  int n = sqlite3_column_bytes(stmt_, col);
  return p ? std::string_view(p, n) : std::string_view();
}

std::string Statement::column_text(int col) const { return std::string(column_view(col)); }

std::optional<int64_t> Statement::column_opt_int(int col) const {
  if (column_is_null(col)) return std::nullopt;
  return column_int(col);
}

std::optional<std::string> Statement::column_opt_text(int col) const {
  if (column_is_null(col)) return std::nullopt;
  return column_text(col);
}

// ---- Transaction --------------------------------------------------------------------------

Transaction::Transaction(Database& db) : db_(db) {
  if (!db.in_transaction()) {
    db.begin_immediate();
    owner_ = true;
  }
}

Transaction::~Transaction() {
  if (owner_ && !done_) db_.rollback();
}

void Transaction::commit() {
  if (done_) return;
  done_ = true;
  if (owner_) db_.commit();
}

}  // namespace posttrain::datastore
