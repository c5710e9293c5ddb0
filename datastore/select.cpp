// See select.h. One INSERT ... SELECT over dialogues joined to their synthetic problem, so a
// large store is selected without reading bodies; INSERT OR IGNORE on the (round, dialogue)
// unique index makes a repeat a no-op.
#include "datastore/select.h"

namespace posttrain::datastore {

namespace {

// FROM/WHERE shared by the count and the insert; binds start at `first`.
std::string where_sql(const DialogueSelection& s) {
  std::string sql =
      " FROM dialogues d LEFT JOIN synthetic_problems sp ON sp.id = d.problem_id WHERE 1";
  if (!s.from_rounds.empty()) {
    sql += " AND d.round IN (";
    for (size_t i = 0; i < s.from_rounds.size(); ++i) sql += i ? ", ?" : "?";
    sql += ")";
  }
  if (s.source) sql += " AND d.source = ?";
  if (s.kind) sql += *s.kind == "none" ? " AND d.problem_id IS NULL" : " AND sp.kind = ?";
  if (s.verdict) {
    sql +=
        " AND (SELECT a.verdict FROM synthetic_attempts a WHERE a.problem_id = d.problem_id"
        " ORDER BY a.attempt DESC, a.id DESC LIMIT 1) = ?";
  }
  return sql;
}

void bind_where(Statement& st, const DialogueSelection& s, int first) {
  int i = first;
  for (int r : s.from_rounds) st.bind(i++, r);
  if (s.source) st.bind(i++, *s.source);
  if (s.kind && *s.kind != "none") st.bind(i++, *s.kind);
  if (s.verdict) st.bind(i++, *s.verdict);
}

}  // namespace

SelectionSummary select_dialogues(Store& store, const DialogueSelection& s) {
  if (s.round < 0) throw InputError(Location{"", 0, "round"}, "must be >= 0");
  SelectionSummary sum;
  Transaction tx = store.transaction();
  Statement count(store.db(), "SELECT COUNT(*)" + where_sql(s));
  bind_where(count, s, 1);
  if (count.step()) sum.matched = count.column_int(0);
  Statement insert(store.db(),
                   "INSERT OR IGNORE INTO selections(round, dialogue_id, reason) SELECT ?, d.id, ?" +
                       where_sql(s) + " ORDER BY d.id");
  const std::string reason = s.reason.empty() ? "store select" : s.reason;
  insert.bind(1, s.round).bind(2, reason);
  bind_where(insert, s, 3);
  insert.run();
  sum.selected = store.db().changes();
  tx.commit();
  return sum;
}

}  // namespace posttrain::datastore
