// Errors every layer throws. The CLI catches posttrain::Error, prints what() on one line and
// exits non-zero, so the message must say what failed and where (file, line, field).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace posttrain {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Where in an input a problem sits; any part may be empty/zero when unknown.
struct Location {
  std::string file;
  int64_t line = 0;       // 1-based; 0 = no line
  std::string field;      // JSON field path such as "messages[2].role"

  // "file:line: field 'x'" with the unknown parts left out.
  std::string describe() const;
};

// Malformed input: a file, line or field that does not have the expected shape.
class InputError : public Error {
 public:
  InputError(const Location& where, const std::string& what);
  const Location& where() const { return where_; }

 private:
  Location where_;
};

// A file that cannot be opened, read or written.
class IoError : public Error {
 public:
  using Error::Error;
};

// A valid request the current configuration cannot serve (wrong model kind, missing device).
class UsageError : public Error {
 public:
  using Error::Error;
};

}  // namespace posttrain
