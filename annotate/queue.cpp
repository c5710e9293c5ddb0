#include "annotate/queue.h"

#include <cmath>

#include "annotate/judgement_rule.h"
#include "annotate/users.h"

namespace posttrain::annotate {
namespace {

using datastore::Choice;
using datastore::Strength;

[[noreturn]] void bad(const std::string& field, const std::string& what) {
  throw ApiError(400, "field '" + field + "': " + what);
}

std::string bounded_text(const Json& v, const std::string& field, size_t max_bytes) {
  if (!v.is_string()) bad(field, "expected a string, got " + std::string(v.type_name()));
  std::string s = v.get<std::string>();
  if (s.size() > max_bytes) bad(field, "longer than " + std::to_string(max_bytes) + " bytes");
  return s;
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

}  // namespace

// ---- request parsing ----------------------------------------------------------------------------

JudgementRequest parse_judgement(const std::string& body, const QueueOptions& options) {
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw ApiError(400, "request body is not valid JSON");
  if (!j.is_object()) throw ApiError(400, "request body must be a JSON object");
  for (const auto& [key, value] : j.items()) {
    if (key != "task_id" && key != "choice" && key != "strength" && key != "edit" &&
        key != "skip") {
      bad(key, "unknown field (expected task_id, choice, strength, edit or skip)");
    }
  }
  JudgementRequest r;
  auto id = j.find("task_id");
  if (id == j.end()) bad("task_id", "missing");
  if (!id->is_number_integer() || id->get<int64_t>() <= 0) bad("task_id", "expected an id > 0");
  r.task_id = id->get<int64_t>();
  if (j.contains("skip")) {
    if (j.contains("choice") || j.contains("strength") || j.contains("edit")) {
      bad("skip", "a skip takes no choice, strength or edit");
    }
    r.skip_reason = bounded_text(j["skip"], "skip", options.max_text_bytes);
    if (blank(*r.skip_reason)) bad("skip", "give a reason");
    return r;
  }
  if (!j.contains("choice")) bad("choice", "missing (\"a\" or \"b\"; or send \"skip\")");
  const Json& c = j["choice"];
  if (c != "a" && c != "b") bad("choice", "expected \"a\" or \"b\", got " + c.dump());
  r.choice = c == "a" ? Choice::kA : Choice::kB;
  if (!j.contains("strength")) bad("strength", "missing");
  const Json& s = j["strength"];
  if (s.is_string()) r.strength = datastore::parse_strength(s.get<std::string>());
  if (!r.strength) {
    bad("strength",
        "expected significantly_better, better, slightly_better or marginally_better, got " +
            s.dump());
  }
  if (j.contains("edit") && !j["edit"].is_null()) {
    r.edit = bounded_text(j["edit"], "edit", options.max_text_bytes);
    if (blank(*r.edit)) bad("edit", "empty (leave it out to keep the chosen response)");
  }
  return r;
}

// ---- edits --------------------------------------------------------------------------------------

Json apply_edit(const Json& chosen, const std::string& text) {
  if (chosen.is_string() || chosen.empty()) return Json(text);
  Json edited = chosen;
  edited.back()["content"] = text;
  return edited;
}

std::string editable_text(const Json& content) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array() && !content.empty()) {
    auto it = content.back().find("content");
    if (it != content.back().end() && it->is_string()) return it->get<std::string>();
  }
  return "";
}

// ---- the queue ----------------------------------------------------------------------------------

Queue::Queue(datastore::Store& store, const QueueOptions& options)
    : store_(store), ann_(store), options_(options) {}

std::optional<datastore::Annotator> Queue::authenticate(const std::string& token) {
  if (token.empty()) return std::nullopt;
  return ann_.annotator_by_token(token_digest(token));
}

std::optional<TaskView> Queue::next_task(const datastore::Annotator& who, double now) {
  auto tx = store_.transaction();
  std::optional<int64_t> id = ann_.held_task(who.id, now);
  if (!id) id = ann_.next_free_task(who.id, now);
  if (!id) return std::nullopt;
  const double expires = now + options_.lease_seconds;
  ann_.put_lease(*id, who.id, expires);
  datastore::Task t = *ann_.task(*id);
  TaskView view;
  view.id = t.id;
  view.prompt = store_.prompt_content(t.prompt_id);
  view.responses =
      Json::array({store_.response_content(t.response_a), store_.response_content(t.response_b)});
  view.lease_expires_at = expires;
  view.wanted = t.wanted;
  tx.commit();
  return view;
}

SubmitResult Queue::submit(const datastore::Annotator& who, const JudgementRequest& r, double now) {
  auto tx = store_.transaction();
  std::optional<datastore::Task> task = ann_.task(r.task_id);
  const std::string name = "task " + std::to_string(r.task_id);
  if (!task) throw ApiError(404, "unknown " + name);
  if (ann_.has_judged(task->id, who.id)) throw ApiError(409, name + " already judged by you");
  std::optional<double> lease = ann_.lease_expiry(task->id, who.id);
  if (!lease) throw ApiError(409, "you hold no lease on " + name + "; GET /api/task first");
  if (!task->open) throw ApiError(409, name + " is already complete");
  if (*lease <= now &&
      task->judged + ann_.live_leases_of_others(task->id, who.id, now) >= task->wanted) {
    throw ApiError(409, "your lease on " + name + " expired and it went to someone else");
  }
  datastore::NewJudgement j;
  j.task_id = task->id;
  j.annotator_id = who.id;
  j.created_at = now;
  j.skip_reason = r.skip_reason;
  SubmitResult result;
  if (!r.skip_reason) {
    j.choice = r.choice;
    j.strength = r.strength;
    const bool a = *r.choice == Choice::kA;
    const int64_t chosen = a ? task->response_a : task->response_b;
    const int64_t rejected = a ? task->response_b : task->response_a;
    Json chosen_content = store_.response_content(chosen);
    if (r.edit && *r.edit != editable_text(chosen_content)) {
      Json edited = apply_edit(chosen_content, *r.edit);
      if (datastore::content_hash(edited) ==
          datastore::content_hash(store_.response_content(rejected))) {
        throw ApiError(400, "field 'edit': identical to the rejected response");
      }
      datastore::NewResponse nr;
      nr.prompt_id = task->prompt_id;
      nr.content = edited;
      nr.round = task->round;
      j.edited_id = store_.add_response(nr);
      result.edited_id = j.edited_id;
    }
  }
  result.judgement_id = ann_.add_judgement(j);
  ann_.drop_lease(task->id, who.id);
  if (!r.skip_reason) {
    std::vector<Vote> votes;
    for (const auto& v : ann_.judgements_of(task->id)) {
      if (v.choice) votes.push_back({*v.choice, *v.strength, v.edited_id, v.annotator});
    }
    PairDecision d = decide_pair(votes, task->wanted);
    if (d.kind == PairDecision::Kind::kNeedThird) {
      ann_.set_wanted(task->id, 3);
      result.needs_third = true;
    } else if (d.kind == PairDecision::Kind::kPair) {
      datastore::NewPair p;
      p.prompt_id = task->prompt_id;
      const bool a = d.choice == Choice::kA;
      p.chosen_id = a ? task->response_a : task->response_b;
      p.rejected_id = a ? task->response_b : task->response_a;
      p.edited_id = d.edited_id;
      p.strength = d.strength;
      p.source = "annotation";
      for (const auto& n : d.annotators) p.annotator += (p.annotator.empty() ? "" : ",") + n;
      p.round = task->round;
      result.pair_id = store_.add_pair(p).first;
      ann_.close_task(task->id, result.pair_id);
    }
  }
  tx.commit();
  return result;
}

Progress Queue::progress(const datastore::Annotator& who, double now) {
  Progress p;
  p.done_today = ann_.judged_since(who.id, std::floor(now / 86400.0) * 86400.0);
  p.left = ann_.open_tasks_left(who.id);
  return p;
}

}  // namespace posttrain::annotate
