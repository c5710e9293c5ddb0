// Forward migrations, applied in order. Never edit a migration that has shipped: add the next
// one. Content bodies are canonical JSON (see store.h) and hashes are raw 32-byte SHA-256 blobs
// (smaller unique indexes than hex; sha256_hex of the body gives the hex form).
#include "datastore/schema.h"

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "datastore/annotation_schema.h"

namespace posttrain::datastore {
namespace {

#define PT_NOW "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
#define PT_SHAPE "TEXT NOT NULL CHECK (shape IN ('text', 'messages'))"

// Migration i (1-based) takes the store from version i-1 to i.
const std::vector<const char*>& migrations() {
  static const std::vector<const char*> list = {
      // 1: runs, checkpoints with lineage, prompts, responses, scores, preference pairs.
      "CREATE TABLE runs ("
      "  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, config TEXT,"
      "  created_at TEXT NOT NULL DEFAULT " PT_NOW
      ");"
      "CREATE TABLE run_stages ("  // a stage of a round that finished (recipes resume after it)
      "  run_id INTEGER NOT NULL REFERENCES runs(id), round INTEGER NOT NULL,"
      "  stage TEXT NOT NULL, finished_at TEXT NOT NULL DEFAULT " PT_NOW
      ","
      "  PRIMARY KEY (run_id, round, stage)) WITHOUT ROWID;"
      "CREATE TABLE checkpoints ("
      "  id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, stage TEXT NOT NULL,"
      "  round INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL DEFAULT " PT_NOW
      ");"
      "CREATE TABLE checkpoint_parents ("
      "  child_id INTEGER NOT NULL REFERENCES checkpoints(id),"
      "  position INTEGER NOT NULL,"
      "  parent_id INTEGER NOT NULL REFERENCES checkpoints(id),"
      "  weight REAL NOT NULL DEFAULT 1.0,"
      "  PRIMARY KEY (child_id, position)) WITHOUT ROWID;"
      "CREATE TABLE prompts ("
      "  id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, shape " PT_SHAPE
      ","
      "  body TEXT NOT NULL, source TEXT NOT NULL DEFAULT '', tags TEXT);"
      "CREATE TABLE responses ("
      "  id INTEGER PRIMARY KEY, prompt_id INTEGER NOT NULL REFERENCES prompts(id),"
      "  hash BLOB NOT NULL, shape " PT_SHAPE
      ", body TEXT NOT NULL,"
      "  checkpoint_id INTEGER REFERENCES checkpoints(id), round INTEGER NOT NULL DEFAULT 0,"
      "  token_count INTEGER, sampling TEXT, system_prompt TEXT,"
      "  UNIQUE (prompt_id, hash), UNIQUE (id, prompt_id));"
      "CREATE TABLE scores ("
      "  id INTEGER PRIMARY KEY, response_id INTEGER NOT NULL REFERENCES responses(id),"
      "  scorer_kind TEXT NOT NULL"
      "    CHECK (scorer_kind IN ('reward_model', 'verifier', 'annotator')),"
      "  scorer TEXT NOT NULL, value REAL NOT NULL, details TEXT,"
      "  round INTEGER NOT NULL DEFAULT 0);"
      "CREATE INDEX scores_by_response ON scores(response_id);"
      "CREATE TABLE preference_pairs ("
      "  id INTEGER PRIMARY KEY, prompt_id INTEGER NOT NULL REFERENCES prompts(id),"
      "  chosen_id INTEGER NOT NULL, rejected_id INTEGER NOT NULL, edited_id INTEGER,"
      "  strength TEXT CHECK (strength IS NULL OR strength IN"
      "    ('significantly_better', 'better', 'slightly_better', 'marginally_better')),"
      "  source TEXT NOT NULL DEFAULT '', annotator TEXT, round INTEGER NOT NULL DEFAULT 0,"
      "  CHECK (chosen_id <> rejected_id),"
      "  UNIQUE (prompt_id, chosen_id, rejected_id),"
      // The composite keys make SQLite check that every response answers the pair's prompt.
      "  FOREIGN KEY (chosen_id, prompt_id) REFERENCES responses(id, prompt_id),"
      "  FOREIGN KEY (rejected_id, prompt_id) REFERENCES responses(id, prompt_id),"
      "  FOREIGN KEY (edited_id, prompt_id) REFERENCES responses(id, prompt_id));",

      // 2: synthetic provenance, dialogues, SFT selections, reference log-probs, evals, metrics.
      "CREATE TABLE synthetic_problems ("
      "  id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, kind TEXT NOT NULL,"
      "  spec TEXT NOT NULL, checker TEXT, round INTEGER NOT NULL DEFAULT 0,"
      "  source TEXT NOT NULL DEFAULT '');"
      "CREATE TABLE synthetic_attempts ("
      "  id INTEGER PRIMARY KEY,"
      "  problem_id INTEGER NOT NULL REFERENCES synthetic_problems(id),"
      "  attempt INTEGER NOT NULL, candidate TEXT NOT NULL, verdict TEXT NOT NULL,"
      "  feedback TEXT NOT NULL DEFAULT '', response_id INTEGER REFERENCES responses(id));"
      "CREATE INDEX synthetic_attempts_by_problem ON synthetic_attempts(problem_id, attempt);"
      "CREATE TABLE dialogues ("
      "  id INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, body TEXT NOT NULL,"
      "  problem_id INTEGER REFERENCES synthetic_problems(id),"
      "  source TEXT NOT NULL DEFAULT '', round INTEGER NOT NULL DEFAULT 0);"
      "CREATE TABLE selections ("
      "  id INTEGER PRIMARY KEY, round INTEGER NOT NULL,"
      "  response_id INTEGER REFERENCES responses(id),"
      "  dialogue_id INTEGER REFERENCES dialogues(id), reason TEXT NOT NULL DEFAULT '',"
      "  CHECK ((response_id IS NULL) <> (dialogue_id IS NULL)));"
      "CREATE UNIQUE INDEX selections_of_response ON selections(round, response_id)"
      "  WHERE response_id IS NOT NULL;"
      "CREATE UNIQUE INDEX selections_of_dialogue ON selections(round, dialogue_id)"
      "  WHERE dialogue_id IS NOT NULL;"
      "CREATE TABLE ref_logprobs ("
      "  pair_id INTEGER NOT NULL REFERENCES preference_pairs(id),"
      "  reference TEXT NOT NULL, settings_hash TEXT NOT NULL,"
      "  chosen REAL NOT NULL, rejected REAL NOT NULL,"
      "  chosen_tokens INTEGER NOT NULL, rejected_tokens INTEGER NOT NULL,"
      "  PRIMARY KEY (reference, settings_hash, pair_id)) WITHOUT ROWID;"
      "CREATE TABLE evals ("
      "  id INTEGER PRIMARY KEY, checkpoint_id INTEGER REFERENCES checkpoints(id),"
      "  round INTEGER NOT NULL DEFAULT 0, name TEXT NOT NULL, value REAL NOT NULL,"
      "  details TEXT, created_at TEXT NOT NULL DEFAULT " PT_NOW
      ");"
      "CREATE TABLE metrics ("
      "  run_id INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL,"
      "  step INTEGER NOT NULL, value REAL NOT NULL,"
      "  PRIMARY KEY (run_id, name, step)) WITHOUT ROWID;",

      // 3: annotators, annotation tasks with their leases, judgements (annotate/).
      annotation_tables_sql(),
  };
  return list;
}

void check_known(Database& db, int version) {
  if (version > kSchemaVersion) {
    throw UsageError("store " + db.path() + " has schema version " + std::to_string(version) +
                     ", newer than this posttrain knows (" + std::to_string(kSchemaVersion) +
                     "); use a newer posttrain");
  }
  int64_t app = db.query_int("PRAGMA application_id");
  if (app != 0 && app != kApplicationId) {
    throw UsageError("store " + db.path() + " is not a posttrain store (application_id " +
                     std::to_string(app) + ")");
  }
  if (app == 0 && version == 0 && db.query_int("SELECT count(*) FROM sqlite_master") > 0) {
    throw UsageError("store " + db.path() +
                     " is an SQLite file with other tables, not a "
                     "posttrain store");
  }
}

}  // namespace

int schema_version(Database& db) { return static_cast<int>(db.query_int("PRAGMA user_version")); }

void migrate(Database& db, int target) {
  if (target < 0 || target > kSchemaVersion) throw Error("migrate: bad target version");
  int version = schema_version(db);
  check_known(db, version);
  if (version >= target) return;
  Transaction tx(db);
  version = schema_version(db);  // another process may have migrated meanwhile
  check_known(db, version);
  for (int v = version; v < target; ++v) db.exec(migrations()[v]);
  if (version < target) {
    db.exec("PRAGMA application_id = " + std::to_string(kApplicationId));
    db.exec("PRAGMA user_version = " + std::to_string(target));
  }
  tx.commit();
}

}  // namespace posttrain::datastore
