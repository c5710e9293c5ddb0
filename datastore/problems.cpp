// Synthetic problems by round (see problems.h).
#include "datastore/problems.h"

#include "datastore/sqlite.h"

namespace posttrain::datastore {

std::vector<StoredProblem> synthetic_problems(Store& store, int round) {
  Statement s(store.db(),
              "SELECT id, kind, spec, checker, round, source FROM synthetic_problems"
              " WHERE round = ? ORDER BY id");
  s.bind(1, round);
  std::vector<StoredProblem> out;
  while (s.step()) {
    StoredProblem p;
    p.id = s.column_int(0);
    p.kind = s.column_text(1);
    p.spec = Json::parse(s.column_text(2));
    if (!s.column_is_null(3)) p.checker = Json::parse(s.column_text(3));
    p.round = static_cast<int>(s.column_int(4));
    p.source = s.column_text(5);
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace posttrain::datastore
