// Migration 3: the tables of the annotation page (annotate/). Annotators with the SHA-256 of
// their token (never the token), tasks (a prompt and two of its responses) with how many
// judgements each wants, leases (who holds which task until when), and judgements, one row per
// annotator and task, skips included; plus the open-task count the page shows, kept by triggers. Lease and judgement times are Unix seconds (REAL), so the
// lease arithmetic is plain comparison.
#include "datastore/annotation_schema.h"

namespace posttrain::datastore {

const char* annotation_tables_sql() {
  return "CREATE TABLE annotators ("
         "  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE CHECK (name <> ''),"
         "  token_sha256 TEXT NOT NULL UNIQUE,"
         "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));"
         "CREATE TABLE annotation_tasks ("
         "  id INTEGER PRIMARY KEY, prompt_id INTEGER NOT NULL REFERENCES prompts(id),"
         "  response_a INTEGER NOT NULL, response_b INTEGER NOT NULL,"
         "  source TEXT NOT NULL DEFAULT '', round INTEGER NOT NULL DEFAULT 0,"
         // judgements (not skips) the task wants: 1, 2 for agreement sampling, 3 after two
         // that disagree; open until it has them.
         "  wanted INTEGER NOT NULL DEFAULT 1 CHECK (wanted BETWEEN 1 AND 3),"
         "  judged INTEGER NOT NULL DEFAULT 0, open INTEGER NOT NULL DEFAULT 1,"
         "  pair_id INTEGER REFERENCES preference_pairs(id),"
         "  CHECK (response_a <> response_b), UNIQUE (prompt_id, response_a, response_b),"
         "  FOREIGN KEY (response_a, prompt_id) REFERENCES responses(id, prompt_id),"
         "  FOREIGN KEY (response_b, prompt_id) REFERENCES responses(id, prompt_id));"
         "CREATE INDEX annotation_tasks_open ON annotation_tasks(open, id);"
         "CREATE TABLE annotation_leases ("
         "  task_id INTEGER NOT NULL REFERENCES annotation_tasks(id),"
         "  annotator_id INTEGER NOT NULL REFERENCES annotators(id),"
         "  expires_at REAL NOT NULL, PRIMARY KEY (task_id, annotator_id)) WITHOUT ROWID;"
         "CREATE INDEX annotation_leases_by_annotator ON annotation_leases(annotator_id);"
         "CREATE TABLE judgements ("
         "  id INTEGER PRIMARY KEY, task_id INTEGER NOT NULL REFERENCES annotation_tasks(id),"
         "  annotator_id INTEGER NOT NULL REFERENCES annotators(id),"
         "  choice TEXT CHECK (choice IN ('a', 'b')),"
         "  strength TEXT CHECK (strength IN"
         "    ('significantly_better', 'better', 'slightly_better', 'marginally_better')),"
         "  edited_id INTEGER REFERENCES responses(id), skip_reason TEXT,"
         "  created_at REAL NOT NULL,"
         // a copy of the task's open flag (kept by a trigger) so an annotator's judgements on
         // open tasks are counted from a small partial index, not by joining every judgement
         "  task_open INTEGER NOT NULL DEFAULT 1,"
         // a judgement names a choice and a strength; a skip names neither and has a reason.
         "  CHECK ((choice IS NULL) = (strength IS NULL)),"
         "  CHECK ((choice IS NULL) = (skip_reason IS NOT NULL)),"
         "  CHECK (edited_id IS NULL OR choice IS NOT NULL),"
         "  UNIQUE (task_id, annotator_id));"
         "CREATE INDEX judgements_by_annotator ON judgements(annotator_id, created_at);"
         "CREATE INDEX judgements_open_by_annotator ON judgements(annotator_id)"
         "  WHERE task_open = 1;"
         // The number of open tasks, kept by triggers whoever writes: the page shows what is
         // left on every task, and counting a large queue each time would cost milliseconds.
         "CREATE TABLE annotation_queue ("
         "  id INTEGER PRIMARY KEY CHECK (id = 1), open_tasks INTEGER NOT NULL);"
         "INSERT INTO annotation_queue(id, open_tasks) VALUES (1, 0);"
         "CREATE TRIGGER annotation_tasks_added AFTER INSERT ON annotation_tasks"
         "  BEGIN UPDATE annotation_queue SET open_tasks = open_tasks + NEW.open; END;"
         "CREATE TRIGGER annotation_tasks_removed AFTER DELETE ON annotation_tasks"
         "  BEGIN UPDATE annotation_queue SET open_tasks = open_tasks - OLD.open; END;"
         "CREATE TRIGGER annotation_tasks_opened_or_closed AFTER UPDATE OF open ON annotation_tasks"
         "  WHEN OLD.open <> NEW.open BEGIN"
         "    UPDATE annotation_queue SET open_tasks = open_tasks + NEW.open - OLD.open;"
         "    UPDATE judgements SET task_open = NEW.open WHERE task_id = NEW.id;"
         "  END;";
}

}  // namespace posttrain::datastore
