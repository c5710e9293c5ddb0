// Reading the prompts of a rejection-sampling run (see prompts.h).
#include "rejection_sampling/prompts.h"

#include <filesystem>

#include "common/jsonl.h"
#include "datastore/problems.h"
#include "datastore/store.h"
#include "rejection_sampling/verifiers.h"

namespace posttrain::rejection_sampling {

using nlohmann::json;

namespace {

// The checker fields of a row of `kind` (what `verify` reads from its lines).
json checker_fields(const json& row, const std::string& kind) {
  json c = json::object();
  for (const char* f : {"answer", "tests", "tools"}) {
    if (row.contains(f)) c[f] = row[f];
  }
  if (kind == "tool" && !c.contains("tools")) c["tools"] = nullptr;  // check_checker names it
  return c;
}

}  // namespace

std::vector<SamplePrompt> read_jsonl_prompts(const std::string& path) {
  JsonlReader reader(path);
  std::vector<SamplePrompt> out;
  json row;
  while (reader.next(&row)) {
    SamplePrompt p;
    p.where = reader.where();
    const char* field = row.contains("prompt") ? "prompt" : "messages";
    if (!row.contains(field)) {
      throw InputError(reader.where(),
                       "a prompt row needs 'prompt' (string or messages) or "
                       "'messages'");
    }
    p.content = row[field];
    if (std::string(field) == "messages" && !p.content.is_array()) {
      throw InputError(reader.where(field), "expected a list of messages");
    }
    datastore::validate_content(p.content, reader.where(field));
    if (p.content.is_array() && p.content.back().value("role", "") == "assistant") {
      throw InputError(reader.where(field),
                       "the last message is the assistant's: a prompt ends before the answer");
    }
    p.id = row.contains("id") ? require_string(row, "id", reader.where("id"))
                              : "line " + std::to_string(reader.line());
    if (row.contains("kind") && !row["kind"].is_null()) {
      p.kind = require_string(row, "kind", reader.where("kind"));
      p.checker = checker_fields(row, p.kind);
      check_checker(p.kind, p.checker, reader.where());
    }
    out.push_back(std::move(p));
  }
  if (out.empty()) throw UsageError("prompts.path " + path + " holds no prompts");
  return out;
}

std::vector<SamplePrompt> read_store_prompts(const std::string& path, int round) {
  datastore::Store::Options opts;
  opts.read_only = true;
  auto store = datastore::Store::open(path, opts);
  std::vector<SamplePrompt> out;
  for (const auto& problem : datastore::synthetic_problems(store, round)) {
    SamplePrompt p;
    p.where = Location{path, 0, "synthetic problem " + std::to_string(problem.id)};
    const json& spec = problem.spec;
    if (!spec.is_object() || !spec.contains("prompt") || !spec["prompt"].is_string()) {
      throw InputError(p.where, "its spec has no string 'prompt'");
    }
    // A tool problem carries the system prompt that enables its tools.
    if (spec.contains("system") && spec["system"].is_string()) {
      p.content = json::array({{{"role", "system"}, {"content", spec["system"]}},
                               {{"role", "user"}, {"content", spec["prompt"]}}});
    } else {
      p.content = spec["prompt"];
    }
    datastore::validate_content(p.content, p.where);
    p.id = spec.contains("id") && spec["id"].is_string() ? spec["id"].get<std::string>()
                                                         : std::to_string(problem.id);
    p.kind = problem.kind;
    p.checker = problem.checker;
    check_checker(p.kind, p.checker, p.where);
    out.push_back(std::move(p));
  }
  if (out.empty()) {
    throw UsageError("prompts.store " + path + " has no synthetic problems in round " +
                     std::to_string(round));
  }
  return out;
}

}  // namespace posttrain::rejection_sampling
