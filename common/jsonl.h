// Line-by-line JSONL reading with line-numbered errors, and typed field access that names
// the file, line and field on a mismatch.
#pragma once

#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/error.h"
#include "common/utf8.h"  // is_valid_utf8, which the reader applies to every line

namespace posttrain {

// Reads a JSONL file one object per line. Blank lines are skipped; a line that is not a JSON
// object, or not valid UTF-8, throws InputError naming file and line.
class JsonlReader {
 public:
  explicit JsonlReader(const std::string& path);  // "-" reads standard input
  // Returns false at end of file. *row receives the parsed object.
  bool next(nlohmann::json* row);
  // 1-based number of the line last returned by next().
  int64_t line() const { return line_; }
  const std::string& path() const { return path_; }
  Location where(const std::string& field = "") const { return {path_, line_, field}; }

 private:
  std::string path_;
  std::ifstream file_;
  std::istream* in_ = nullptr;
  int64_t line_ = 0;
};

// Typed access to a JSON object's fields; every failure names `where` plus the field.
const nlohmann::json& require_field(const nlohmann::json& obj, const std::string& field,
                                    const Location& where);
std::string require_string(const nlohmann::json& obj, const std::string& field,
                           const Location& where);
int64_t require_int(const nlohmann::json& obj, const std::string& field, const Location& where);
std::vector<int64_t> require_int_list(const nlohmann::json& obj, const std::string& field,
                                      const Location& where);

// Writes one JSON object per line; throws IoError when the file cannot be written.
class JsonlWriter {
 public:
  explicit JsonlWriter(const std::string& path);  // "-" writes standard output
  void write(const nlohmann::json& row);
  void close();  // flushes; throws IoError on a failed write

 private:
  std::string path_;
  std::ofstream file_;
  std::ostream* out_ = nullptr;
};

}  // namespace posttrain
