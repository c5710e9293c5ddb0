#include "core/data/row_checks.h"

#include <algorithm>

#include "core/tokenizer/tokenizer.h"

namespace posttrain::core {

void check_text_matches_ids(const Tokenizer& tokenizer, const std::string& text,
                            const std::vector<int64_t>& ids, const Location& where) {
  const std::vector<int64_t> with = tokenizer.encode(text, true);
  if (with == ids) return;
  const std::vector<int64_t> without = tokenizer.encode(text, false);
  if (without == ids) return;
  // Report against the encoding with special tokens (what tokenize writes by default).
  const auto diff = std::mismatch(ids.begin(), ids.end(), with.begin(), with.end());
  const size_t at = static_cast<size_t>(diff.first - ids.begin());
  Location field = where;
  field.field = "text";
  std::string detail = "input_ids has " + std::to_string(ids.size()) + " tokens, the text " +
                       std::to_string(with.size());
  if (at < ids.size() && at < with.size()) {
    detail += "; first difference at token " + std::to_string(at) + ": " +
              std::to_string(ids[at]) + " in input_ids, " + std::to_string(with[at]) +
              " from the text";
  }
  throw InputError(field, "does not encode to the row's input_ids (" + detail +
                              "); give one of them, or make them agree");
}

std::vector<int64_t> fit_context(std::vector<int64_t> ids, int64_t max_len, bool truncate,
                                 const Location& where) {
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n <= max_len) return ids;
  if (truncate) {
    ids.resize(static_cast<size_t>(max_len));
    return ids;
  }
  throw InputError(where, "the row has " + std::to_string(n) +
                              " tokens, more than the model's context of " +
                              std::to_string(max_len) +
                              " (max_position_embeddings); shorten it or pass --truncate");
}

}  // namespace posttrain::core
