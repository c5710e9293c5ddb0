// SQL of the annotation tables (see annotation_store.h and annotation_schema.cpp).
#include "datastore/annotation_store.h"

#include <sqlite3.h>

namespace posttrain::datastore {
namespace {

enum Key {
  kInsAnnotator,
  kSelAnnotatorByName,
  kSelAnnotatorByToken,
  kSelAnnotators,
  kSelCandidates,
  kSelLatestRound,
  kInsTask,
  kSelTaskId,
  kSelTask,
  kSetWanted,
  kCloseTask,
  kHeldTask,
  kNextTask,
  kPutLease,
  kLeaseExpiry,
  kLiveOthers,
  kDropLease,
  kInsJudgement,
  kBumpJudged,
  kHasJudged,
  kJudgementsOf,
  kAllJudgements,
  kJudgedSince,
  kOpenLeft,
  kCountOpen,
  kCountAll,
};

const char kJudgementColumns[] =
    "SELECT j.id, j.task_id, j.annotator_id, a.name, j.choice, j.strength, j.edited_id,"
    " j.skip_reason, j.created_at FROM judgements j JOIN annotators a ON a.id = j.annotator_id ";

// Single-row reads reset their statement before returning: a statement left on a row keeps
// the connection's read transaction (and its snapshot) open, and a later BEGIN IMMEDIATE on a
// snapshot another connection has moved past fails with SQLITE_BUSY however long it retries.
int64_t count_of(Statement& s) {
  s.step();
  int64_t n = s.column_int(0);
  s.reset();
  return n;
}

std::optional<int64_t> first_id(Statement& s) {
  if (!s.step()) return std::nullopt;
  int64_t id = s.column_int(0);
  s.reset();
  return id;
}

Judgement read_judgement(const Statement& s) {
  Judgement j;
  j.id = s.column_int(0);
  j.task_id = s.column_int(1);
  j.annotator_id = s.column_int(2);
  j.annotator = s.column_text(3);
  if (auto c = s.column_opt_text(4)) j.choice = *c == "a" ? Choice::kA : Choice::kB;
  if (auto st = s.column_opt_text(5)) j.strength = parse_strength(*st);
  j.edited_id = s.column_opt_int(6);
  j.skip_reason = s.column_opt_text(7);
  j.created_at = s.column_double(8);
  return j;
}

}  // namespace

const char* choice_name(Choice c) { return c == Choice::kA ? "a" : "b"; }

AnnotationStore::AnnotationStore(Store& store) : store_(store) {}
AnnotationStore::~AnnotationStore() = default;

Statement& AnnotationStore::stmt(int key, const char* sql) {
  auto& slot = stmts_[key];
  if (!slot) slot = std::make_unique<Statement>(store_.db(), sql);
  return slot->reset();
}

// ---- annotators -------------------------------------------------------------------------------

int64_t AnnotationStore::add_annotator(const std::string& name, const std::string& token_sha256) {
  if (name.empty()) throw InputError(Location{"", 0, "name"}, "empty annotator name");
  Transaction tx(store_.db());
  auto& s = stmt(kSelAnnotatorByName, "SELECT id FROM annotators WHERE name = ?").bind(1, name);
  const bool taken = s.step();
  s.reset();
  if (taken) throw UsageError("annotator '" + name + "' already exists");
  stmt(kInsAnnotator, "INSERT INTO annotators(name, token_sha256) VALUES (?, ?)")
      .bind(1, name)
      .bind(2, token_sha256)
      .run();
  int64_t id = store_.db().last_insert_rowid();
  tx.commit();
  return id;
}

std::optional<Annotator> AnnotationStore::annotator_by_token(const std::string& token_sha256) {
  auto& s = stmt(kSelAnnotatorByToken, "SELECT id, name FROM annotators WHERE token_sha256 = ?")
                .bind(1, token_sha256);
  if (!s.step()) return std::nullopt;
  Annotator a{s.column_int(0), s.column_text(1)};
  s.reset();
  return a;
}

std::vector<Annotator> AnnotationStore::annotators() {
  auto& s = stmt(kSelAnnotators, "SELECT id, name FROM annotators ORDER BY id");
  std::vector<Annotator> out;
  while (s.step()) out.push_back({s.column_int(0), s.column_text(1)});
  return out;
}

// ---- tasks ------------------------------------------------------------------------------------

std::vector<Candidate> AnnotationStore::unjudged_candidates(
    int round, const std::optional<std::string>& source) {
  auto& s = stmt(kSelCandidates,
                 "SELECT r.prompt_id, r.id,"
                 " (SELECT sc.value FROM scores sc WHERE sc.response_id = r.id"
                 "   AND sc.scorer_kind = 'reward_model' ORDER BY sc.id DESC LIMIT 1)"
                 " FROM responses r JOIN prompts p ON p.id = r.prompt_id"
                 " WHERE r.round = ?1 AND (?2 IS NULL OR p.source = ?2)"
                 " AND NOT EXISTS (SELECT 1 FROM annotation_tasks t"
                 "   WHERE t.prompt_id = r.prompt_id AND t.round = ?1)"
                 " AND NOT EXISTS (SELECT 1 FROM preference_pairs pp"
                 "   WHERE pp.prompt_id = r.prompt_id AND coalesce(pp.annotator, '') <> ''"
                 "   AND r.id IN (pp.chosen_id, pp.rejected_id, pp.edited_id))"
                 " AND NOT EXISTS (SELECT 1 FROM scores s2"
                 "   WHERE s2.response_id = r.id AND s2.scorer_kind = 'annotator')"
                 " ORDER BY r.prompt_id, r.id");
  s.bind(1, round).bind(2, source);
  std::vector<Candidate> out;
  while (s.step()) {
    Candidate c;
    c.prompt_id = s.column_int(0);
    c.response_id = s.column_int(1);
    if (!s.column_is_null(2)) c.reward = s.column_double(2);
    out.push_back(c);
  }
  return out;
}

std::optional<int> AnnotationStore::latest_response_round() {
  auto& s = stmt(kSelLatestRound, "SELECT max(round) FROM responses");
  std::optional<int> round;
  if (s.step() && !s.column_is_null(0)) round = static_cast<int>(s.column_int(0));
  s.reset();
  return round;
}

std::pair<int64_t, bool> AnnotationStore::add_task(const NewTask& t) {
  if (t.response_a == t.response_b) {
    throw InputError(Location{"", 0, "response_b"}, "a task needs two different responses");
  }
  if (t.wanted < 1 || t.wanted > 3) throw InputError(Location{"", 0, "wanted"}, "not in 1..3");
  Transaction tx(store_.db());
  auto& sel = stmt(kSelTaskId,
                   "SELECT id FROM annotation_tasks WHERE prompt_id = ? AND response_a = ?"
                   " AND response_b = ?")
                  .bind(1, t.prompt_id)
                  .bind(2, t.response_a)
                  .bind(3, t.response_b);
  if (sel.step()) {
    int64_t id = sel.column_int(0);
    sel.reset();
    return {id, false};
  }
  try {
    stmt(kInsTask,
         "INSERT INTO annotation_tasks(prompt_id, response_a, response_b, source, round, wanted)"
         " VALUES (?, ?, ?, ?, ?, ?)")
        .bind(1, t.prompt_id)
        .bind(2, t.response_a)
        .bind(3, t.response_b)
        .bind(4, t.source)
        .bind(5, t.round)
        .bind(6, t.wanted)
        .run();
  } catch (const DbError& e) {
    if ((e.code() & 0xff) != SQLITE_CONSTRAINT) throw;
    throw InputError(Location{"", 0, "response_a"}, "responses " + std::to_string(t.response_a) +
                                                        " and " + std::to_string(t.response_b) +
                                                        " are not both answers to prompt " +
                                                        std::to_string(t.prompt_id));
  }
  int64_t id = store_.db().last_insert_rowid();
  tx.commit();
  return {id, true};
}

std::optional<Task> AnnotationStore::task(int64_t id) {
  auto& s = stmt(kSelTask,
                 "SELECT id, prompt_id, response_a, response_b, source, round, wanted, judged,"
                 " open, pair_id FROM annotation_tasks WHERE id = ?")
                .bind(1, id);
  if (!s.step()) return std::nullopt;
  Task t;
  t.id = s.column_int(0);
  t.prompt_id = s.column_int(1);
  t.response_a = s.column_int(2);
  t.response_b = s.column_int(3);
  t.source = s.column_text(4);
  t.round = static_cast<int>(s.column_int(5));
  t.wanted = static_cast<int>(s.column_int(6));
  t.judged = static_cast<int>(s.column_int(7));
  t.open = s.column_int(8) != 0;
  t.pair_id = s.column_opt_int(9);
  s.reset();
  return t;
}

void AnnotationStore::set_wanted(int64_t task_id, int wanted) {
  stmt(kSetWanted, "UPDATE annotation_tasks SET wanted = ? WHERE id = ?")
      .bind(1, wanted)
      .bind(2, task_id)
      .run();
}

void AnnotationStore::close_task(int64_t task_id, std::optional<int64_t> pair_id) {
  stmt(kCloseTask, "UPDATE annotation_tasks SET open = 0, pair_id = ? WHERE id = ?")
      .bind(1, pair_id)
      .bind(2, task_id)
      .run();
}

// ---- leases -----------------------------------------------------------------------------------

std::optional<int64_t> AnnotationStore::held_task(int64_t annotator_id, double now) {
  auto& s = stmt(kHeldTask,
                 "SELECT l.task_id FROM annotation_leases l"
                 " JOIN annotation_tasks t ON t.id = l.task_id"
                 " WHERE l.annotator_id = ? AND l.expires_at > ? AND t.open = 1"
                 " ORDER BY l.task_id LIMIT 1")
                .bind(1, annotator_id)
                .bind(2, now);
  return first_id(s);
}

std::optional<int64_t> AnnotationStore::next_free_task(int64_t annotator_id, double now) {
  auto& s = stmt(kNextTask,
                 "SELECT t.id FROM annotation_tasks t WHERE t.open = 1"
                 " AND NOT EXISTS (SELECT 1 FROM judgements j"
                 "   WHERE j.task_id = t.id AND j.annotator_id = ?1)"
                 " AND t.judged + (SELECT count(*) FROM annotation_leases l"
                 "   WHERE l.task_id = t.id AND l.annotator_id <> ?1 AND l.expires_at > ?2)"
                 "   < t.wanted"
                 " ORDER BY t.id LIMIT 1")
                .bind(1, annotator_id)
                .bind(2, now);
  return first_id(s);
}

void AnnotationStore::put_lease(int64_t task_id, int64_t annotator_id, double expires_at) {
  stmt(kPutLease,
       "INSERT INTO annotation_leases(task_id, annotator_id, expires_at) VALUES (?, ?, ?)"
       " ON CONFLICT(task_id, annotator_id) DO UPDATE SET expires_at = excluded.expires_at")
      .bind(1, task_id)
      .bind(2, annotator_id)
      .bind(3, expires_at)
      .run();
}

std::optional<double> AnnotationStore::lease_expiry(int64_t task_id, int64_t annotator_id) {
  auto& s = stmt(kLeaseExpiry,
                 "SELECT expires_at FROM annotation_leases WHERE task_id = ? AND annotator_id = ?")
                .bind(1, task_id)
                .bind(2, annotator_id);
  if (!s.step()) return std::nullopt;
  double expires = s.column_double(0);
  s.reset();
  return expires;
}

int64_t AnnotationStore::live_leases_of_others(int64_t task_id, int64_t annotator_id, double now) {
  auto& s = stmt(kLiveOthers,
                 "SELECT count(*) FROM annotation_leases WHERE task_id = ? AND annotator_id <> ?"
                 " AND expires_at > ?")
                .bind(1, task_id)
                .bind(2, annotator_id)
                .bind(3, now);
  return count_of(s);
}

void AnnotationStore::drop_lease(int64_t task_id, int64_t annotator_id) {
  stmt(kDropLease, "DELETE FROM annotation_leases WHERE task_id = ? AND annotator_id = ?")
      .bind(1, task_id)
      .bind(2, annotator_id)
      .run();
}

// ---- judgements -------------------------------------------------------------------------------

int64_t AnnotationStore::add_judgement(const NewJudgement& j) {
  Transaction tx(store_.db());
  if (has_judged(j.task_id, j.annotator_id)) {
    throw UsageError("annotator " + std::to_string(j.annotator_id) + " already judged task " +
                     std::to_string(j.task_id));
  }
  std::optional<std::string> choice, strength;
  if (j.choice) choice = choice_name(*j.choice);
  if (j.strength) strength = strength_name(*j.strength);
  stmt(kInsJudgement,
       "INSERT INTO judgements(task_id, annotator_id, choice, strength, edited_id, skip_reason,"
       " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
      .bind(1, j.task_id)
      .bind(2, j.annotator_id)
      .bind(3, choice)
      .bind(4, strength)
      .bind(5, j.edited_id)
      .bind(6, j.skip_reason)
      .bind(7, j.created_at)
      .run();
  int64_t id = store_.db().last_insert_rowid();
  if (j.choice) {
    stmt(kBumpJudged, "UPDATE annotation_tasks SET judged = judged + 1 WHERE id = ?")
        .bind(1, j.task_id)
        .run();
  }
  tx.commit();
  return id;
}

bool AnnotationStore::has_judged(int64_t task_id, int64_t annotator_id) {
  auto& s = stmt(kHasJudged, "SELECT 1 FROM judgements WHERE task_id = ? AND annotator_id = ?")
                .bind(1, task_id)
                .bind(2, annotator_id);
  const bool judged = s.step();
  s.reset();
  return judged;
}

std::vector<Judgement> AnnotationStore::judgements_of(int64_t task_id) {
  static const std::string sql =
      std::string(kJudgementColumns) + "WHERE j.task_id = ? ORDER BY j.id";
  auto& s = stmt(kJudgementsOf, sql.c_str()).bind(1, task_id);
  std::vector<Judgement> out;
  while (s.step()) out.push_back(read_judgement(s));
  return out;
}

std::vector<Judgement> AnnotationStore::all_judgements() {
  static const std::string sql = std::string(kJudgementColumns) + "ORDER BY j.task_id, j.id";
  auto& s = stmt(kAllJudgements, sql.c_str());
  std::vector<Judgement> out;
  while (s.step()) out.push_back(read_judgement(s));
  return out;
}

// ---- progress ---------------------------------------------------------------------------------

int64_t AnnotationStore::judged_since(int64_t annotator_id, double since) {
  auto& s = stmt(kJudgedSince,
                 "SELECT count(*) FROM judgements WHERE annotator_id = ? AND created_at >= ?")
                .bind(1, annotator_id)
                .bind(2, since);
  return count_of(s);
}

int64_t AnnotationStore::open_tasks_left(int64_t annotator_id) {
  // Open tasks (the trigger-kept count) minus the open ones this annotator already did (a
  // partial index of judgements on open tasks): no scan of the queue or of their history.
  auto& s = stmt(kOpenLeft,
                 "SELECT (SELECT open_tasks FROM annotation_queue WHERE id = 1)"
                 " - (SELECT count(*) FROM judgements WHERE annotator_id = ? AND task_open = 1)")
                .bind(1, annotator_id);
  return count_of(s);
}

int64_t AnnotationStore::count_tasks(bool open_only) {
  auto& s = open_only ? stmt(kCountOpen, "SELECT open_tasks FROM annotation_queue WHERE id = 1")
                      : stmt(kCountAll, "SELECT count(*) FROM annotation_tasks");
  return count_of(s);
}

}  // namespace posttrain::datastore
