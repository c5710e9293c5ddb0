// Pieces shared by store.cpp, import.cpp and export.cpp; not part of the public API.
#pragma once

#include <string>
#include <string_view>

#include "common/sha256.h"  // sha256_digest: the raw content hashes
#include "datastore/sqlite.h"
#include "datastore/store.h"

namespace posttrain::datastore::internal {


// The commonest TRL line, {"prompt": "...", "chosen": "...", "rejected": "..."} (other string
// fields ignored), read with nlohmann's SAX parser straight into canonical form, no DOM built.
// Each Canonical is what canonicalize() gives for the same string value. Returns false, leaving
// the judgement and any error message to the general path, for anything else: invalid JSON or
// UTF-8, a nested or non-string value, a repeated wanted key, a missing or empty value, or
// chosen identical to rejected.
struct TrlStrings {
  Canonical prompt, chosen, rejected;
};
bool parse_trl_sax(std::string_view line, TrlStrings* out);

// SELECT over preference_pairs (with the four bodies as columns 9..12 and their shapes as
// 13..16 when with_content) for `filter`, ordered by id; bind_pair_filter binds its values.
// Columns: 0 id, 1 prompt_id, 2 chosen_id, 3 rejected_id, 4 edited_id, 5 strength, 6 source,
// 7 annotator, 8 round.
std::string pair_query_sql(const PairFilter& filter);
void bind_pair_filter(Statement& stmt, const PairFilter& filter);
// Reads the row the statement is on (content parsed when filter.with_content).
Pair read_pair(const Statement& stmt, bool with_content);

// SELECT id, body, problem_id, source, round FROM dialogues for rounds/source, by id.
std::string dialogue_query_sql(const std::vector<int>& rounds,
                               const std::optional<std::string>& source);
void bind_dialogue_filter(Statement& stmt, const std::vector<int>& rounds,
                          const std::optional<std::string>& source);

}  // namespace posttrain::datastore::internal
