// Shared by the rejection-sampling CLI tests: a temp folder with tiny models, config writing,
// JSONL reading, and raw reads of every store table (through SQLite's C API, read-only).
#pragma once

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/files.h"
#include "tests/cli_run.h"

namespace posttrain::rejection_sampling::testing {

using Json = nlohmann::json;

inline std::vector<Json> read_jsonl(const std::string& path) {
  std::vector<Json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(Json::parse(line));
  }
  return out;
}

inline void write_jsonl(const std::string& path, const std::vector<Json>& rows) {
  std::ofstream out(path);
  for (const auto& r : rows) out << r.dump() << "\n";
}

// Rows of `sql` as JSON objects (column name -> value; text stays text). Empty when the file
// does not exist or the query fails (e.g. a store not yet created).
inline std::vector<Json> query(const std::string& db_path, const std::string& sql) {
  std::vector<Json> out;
  if (!std::filesystem::exists(db_path)) return out;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return out;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW) {
      Json row = Json::object();
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        const std::string name = sqlite3_column_name(st, c);
        switch (sqlite3_column_type(st, c)) {
          case SQLITE_INTEGER:
            row[name] = sqlite3_column_int64(st, c);
            break;
          case SQLITE_FLOAT:
            row[name] = sqlite3_column_double(st, c);
            break;
          case SQLITE_NULL:
            row[name] = nullptr;
            break;
          case SQLITE_BLOB: {  // hashes: hex, so rows print and compare as text
            const auto* p = static_cast<const unsigned char*>(sqlite3_column_blob(st, c));
            std::string hex;
            for (int i = 0; i < sqlite3_column_bytes(st, c); ++i) {
              hex += "0123456789abcdef"[p[i] >> 4];
              hex += "0123456789abcdef"[p[i] & 15];
            }
            row[name] = hex;
            break;
          }
          default: {
            const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, c));
            row[name] = std::string(p ? p : "", static_cast<size_t>(sqlite3_column_bytes(st, c)));
          }
        }
      }
      out.push_back(std::move(row));
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

// Every row of every table, timestamps (columns named *_at) left out: table -> rows in rowid
// or primary-key order.
inline std::map<std::string, std::vector<Json>> dump_store(const std::string& db_path) {
  std::map<std::string, std::vector<Json>> out;
  for (const auto& t : query(db_path,
                             "SELECT name FROM sqlite_master WHERE type = 'table' AND "
                             "name NOT LIKE 'sqlite_%' ORDER BY name")) {
    const std::string name = t["name"];
    const auto n = query(db_path, "SELECT count(*) AS n FROM pragma_table_info('" + name + "')");
    std::string order = "1";
    for (int64_t c = 2; c <= n.at(0)["n"].get<int64_t>(); ++c) order += ", " + std::to_string(c);
    auto rows = query(db_path, "SELECT * FROM " + name + " ORDER BY " + order);
    for (auto& r : rows) {
      for (auto it = r.begin(); it != r.end();) {
        const std::string k = it.key();
        if (k.size() > 3 && k.compare(k.size() - 3, 3, "_at") == 0) {
          it = r.erase(it);
        } else {
          ++it;
        }
      }
    }
    out[name] = std::move(rows);
  }
  return out;
}

}  // namespace posttrain::rejection_sampling::testing
