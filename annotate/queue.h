// The annotation queue: what one API request does to the store, independent of HTTP. Each call
// runs in one store transaction, so a request either happens whole or not at all, and several
// servers (or processes) on one store cannot hand a task to two annotators past its wanted
// count. Leases: GET hands an annotator the task they already hold (renewed), else the next
// open task that still has room (judgements + other annotators' live leases < wanted); a
// judgement needs the annotator's lease on the task — an expired lease still counts while no
// one else has taken the slot.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/error.h"
#include "datastore/annotation_store.h"

namespace posttrain::annotate {

using Json = nlohmann::json;

// A request the queue refuses, with the HTTP status that says why (400 bad input, 404 unknown
// task, 409 conflicts with the task's state).
class ApiError : public Error {
 public:
  ApiError(int status, const std::string& message) : Error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

struct QueueOptions {
  double lease_seconds = 600;          // how long a handed-out task stays reserved
  size_t max_text_bytes = 256 * 1024;  // an edit or skip reason longer than this is refused
};

struct TaskView {
  int64_t id = 0;
  Json prompt;                  // string or message list
  Json responses;               // [A, B], each a string or message list
  double lease_expires_at = 0;  // Unix seconds
  int wanted = 1;
};

struct Progress {
  int64_t done_today = 0;  // judgements and skips since 00:00 UTC
  int64_t left = 0;        // open tasks this annotator has not done
};

struct JudgementRequest {
  int64_t task_id = 0;
  std::optional<datastore::Choice> choice;  // set with strength, or neither for a skip
  std::optional<datastore::Strength> strength;
  std::optional<std::string> edit;         // new text of the chosen response
  std::optional<std::string> skip_reason;  // set: a skip
};

// Parses a POST /api/judgement body: {"task_id": N, "choice": "a"|"b", "strength": NAME,
// "edit"?: TEXT} or {"task_id": N, "skip": REASON}. Throws ApiError 400 naming the field.
JudgementRequest parse_judgement(const std::string& body, const QueueOptions& options);

struct SubmitResult {
  int64_t judgement_id = 0;
  std::optional<int64_t> pair_id;    // the pair this judgement completed, if it did
  std::optional<int64_t> edited_id;  // the stored edit, if any
  bool needs_third = false;          // it disagreed with the first: a third judgement is due
};

class Queue {
 public:
  Queue(datastore::Store& store, const QueueOptions& options);

  std::optional<datastore::Annotator> authenticate(const std::string& token);
  // The task for this annotator (leased until now + lease_seconds), or nullopt when none is
  // left for them.
  std::optional<TaskView> next_task(const datastore::Annotator& who, double now);
  SubmitResult submit(const datastore::Annotator& who, const JudgementRequest& request, double now);
  Progress progress(const datastore::Annotator& who, double now);

 private:
  datastore::Store& store_;
  datastore::AnnotationStore ann_;
  QueueOptions options_;
};

// A chosen response with its text replaced by `text`: a string becomes `text`; a message list
// keeps its messages and replaces the content of the last one.
Json apply_edit(const Json& chosen, const std::string& text);
// The text an edit box starts from: the string, or the last message's content.
std::string editable_text(const Json& content);

}  // namespace posttrain::annotate
