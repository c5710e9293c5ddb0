#include "common/error.h"

namespace posttrain {

std::string Location::describe() const {
  std::string out = file;
  if (line > 0) out += (out.empty() ? "line " : ":") + std::to_string(line);
  if (!field.empty()) out += (out.empty() ? "" : ": ") + std::string("field '") + field + "'";
  return out;
}

InputError::InputError(const Location& where, const std::string& what)
    : Error(where.describe().empty() ? what : where.describe() + ": " + what), where_(where) {}

}  // namespace posttrain
