// Typed access to the annotation tables (migration 3: annotators, annotation_tasks,
// annotation_leases, judgements) for annotate/, so no SQL lives outside datastore/. The rules
// (which task an annotator gets, when judgements make a pair) live in annotate/; this class
// only reads and writes rows. It borrows a Store (which must outlive it) and, like the Store,
// is one connection: not thread-safe. Calls join the caller's open Store::transaction(); the
// annotate queue runs each request in one.
//
// Times are Unix seconds (double) supplied by the caller, so tests can move the clock.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "datastore/store.h"

namespace posttrain::datastore {

enum class Choice { kA, kB };
const char* choice_name(Choice c);  // "a" / "b"

struct Annotator {
  int64_t id = 0;
  std::string name;
};

struct NewTask {
  int64_t prompt_id = 0;
  int64_t response_a = 0, response_b = 0;  // responses of prompt_id, distinct
  std::string source;                      // where the pair of responses came from
  int round = 0;
  int wanted = 1;  // judgements wanted: 1, or 2 for agreement sampling
};

struct Task {
  int64_t id = 0, prompt_id = 0, response_a = 0, response_b = 0;
  std::string source;
  int round = 0, wanted = 1;
  int judged = 0;  // judgements (not skips) so far
  bool open = true;
  std::optional<int64_t> pair_id;  // the preference pair the judgements made, once made
};

struct NewJudgement {
  int64_t task_id = 0, annotator_id = 0;
  std::optional<Choice> choice;  // unset with strength for a skip
  std::optional<Strength> strength;
  std::optional<int64_t> edited_id;  // the annotator's edit of the chosen response
  std::optional<std::string> skip_reason;
  double created_at = 0;
};

struct Judgement : NewJudgement {
  int64_t id = 0;
  std::string annotator;  // name
};

// A response of a round that could become half of a task, with its latest reward-model score.
struct Candidate {
  int64_t prompt_id = 0, response_id = 0;
  std::optional<double> reward;
};

class AnnotationStore {
 public:
  explicit AnnotationStore(Store& store);
  ~AnnotationStore();
  AnnotationStore(const AnnotationStore&) = delete;
  AnnotationStore& operator=(const AnnotationStore&) = delete;
  Store& store() { return store_; }

  // Annotators. `token_sha256` is the hex SHA-256 of the token (the token is never stored).
  // Throws UsageError when the name is taken, InputError when it is empty.
  int64_t add_annotator(const std::string& name, const std::string& token_sha256);
  std::optional<Annotator> annotator_by_token(const std::string& token_sha256);
  std::vector<Annotator> annotators();  // by id

  // Responses of `round` (of prompts from `source` when set), ordered by prompt then id, with
  // no human judgement yet (in no pair that names an annotator, no annotator score), of
  // prompts that have no annotation task in that round.
  std::vector<Candidate> unjudged_candidates(int round, const std::optional<std::string>& source);
  std::optional<int> latest_response_round();  // max(responses.round); nullopt when none

  // Adds a task; a known (prompt, a, b) returns its id and false. InputError when a response
  // does not answer the prompt or a == b.
  std::pair<int64_t, bool> add_task(const NewTask& task);
  std::optional<Task> task(int64_t id);
  void set_wanted(int64_t task_id, int wanted);
  // Marks the task done (no more judgements wanted), with the pair it made, if any.
  void close_task(int64_t task_id, std::optional<int64_t> pair_id);

  // Leases. held_task: an open task whose lease `annotator` holds past `now` (lowest id).
  // next_free_task: the lowest open task the annotator has not judged or skipped whose
  // judgements plus other annotators' live leases are fewer than it wants.
  std::optional<int64_t> held_task(int64_t annotator_id, double now);
  std::optional<int64_t> next_free_task(int64_t annotator_id, double now);
  void put_lease(int64_t task_id, int64_t annotator_id, double expires_at);   // replaces
  std::optional<double> lease_expiry(int64_t task_id, int64_t annotator_id);  // live or not
  int64_t live_leases_of_others(int64_t task_id, int64_t annotator_id, double now);
  void drop_lease(int64_t task_id, int64_t annotator_id);

  // Judgements: one per (task, annotator); a judgement (not a skip) adds one to task.judged.
  // Throws UsageError when the annotator already judged the task.
  int64_t add_judgement(const NewJudgement& judgement);
  bool has_judged(int64_t task_id, int64_t annotator_id);
  std::vector<Judgement> judgements_of(int64_t task_id);  // by id
  std::vector<Judgement> all_judgements();                // by task, then id

  // Progress: rows (skips included) the annotator wrote at or after `since`; open tasks the
  // annotator has not judged or skipped.
  int64_t judged_since(int64_t annotator_id, double since);
  int64_t open_tasks_left(int64_t annotator_id);
  int64_t count_tasks(bool open_only);

 private:
  Statement& stmt(int key, const char* sql);

  Store& store_;
  std::map<int, std::unique_ptr<Statement>> stmts_;
};

}  // namespace posttrain::datastore
