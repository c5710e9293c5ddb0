// synth: problems -> (candidates) -> self-correction in parallel -> filters -> JSONL / store.
// verify: lines -> the same checkers in parallel -> lines with verdicts.
#include "synthetic/pipeline.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include "common/jsonl.h"
#include "datastore/store.h"
#include "synthetic/code_check.h"
#include "synthetic/code_problems.h"
#include "synthetic/math_check.h"
#include "synthetic/math_problems.h"
#include "synthetic/tool_problems.h"
#include "synthetic/tools.h"

namespace posttrain::synthetic {

Kind parse_kind(const std::string& name) {
  if (name == "math") return Kind::kMath;
  if (name == "code") return Kind::kCode;
  if (name == "tool") return Kind::kTool;
  throw UsageError("kind must be math, code or tool (got '" + name + "')");
}

std::string kind_name(Kind kind) {
  return kind == Kind::kMath ? "math" : kind == Kind::kCode ? "code" : "tool";
}

namespace {

using json = nlohmann::json;
using Check = std::function<AttemptOutcome(const json& attempt, int slot)>;

AttemptOutcome not_a_string() {
  AttemptOutcome o;
  o.verdict = "error";
  o.feedback = "The attempt must be a string.";
  return o;
}

Check math_checker(Rational answer, bool steps) {
  return [answer, steps](const json& attempt, int) {
    if (!attempt.is_string()) return not_a_string();
    MathCheck c = check_math(attempt.get<std::string>(), answer, steps);
    AttemptOutcome o;
    o.passed = c.passed;
    o.verdict = c.verdict;
    o.feedback = c.feedback;
    o.details = c.details();
    return o;
  };
}

Check code_checker(std::vector<std::string> tests, const Sandbox* sandbox) {
  return [tests, sandbox](const json& attempt, int slot) {
    if (!attempt.is_string()) return not_a_string();
    CodeCheck c = check_code(attempt.get<std::string>(), tests, *sandbox, slot);
    AttemptOutcome o;
    o.passed = c.passed;
    o.verdict = c.verdict;
    o.feedback = c.feedback;
    o.details = c.details();
    return o;
  };
}

Check tool_checker(json answer, std::vector<std::string> tools, const ToolRegistry* registry,
                   bool require_use) {
  return [answer, tools, registry, require_use](const json& attempt, int slot) {
    AttemptOutcome o;
    ToolCheck c;
    try {
      c = check_tool_attempt(attempt, answer, *registry, tools, require_use, slot);
    } catch (const InputError& e) {
      o.verdict = "error";
      o.feedback = e.what();
      return o;
    }
    o.passed = c.passed;
    o.verdict = c.verdict;
    o.feedback = c.feedback;
    o.details = c.details();
    o.messages = c.run.messages;
    return o;
  };
}

std::unique_ptr<Sandbox> make_sandbox(const SandboxOptions& options) {
  return std::make_unique<Sandbox>(options);
}

std::vector<Document> documents(const std::optional<std::string>& dir) {
  return dir ? load_documents(*dir) : builtin_documents();
}

// The final assistant text of a passing attempt (what the filters look at).
std::string final_text(const Correction& c) {
  const AttemptOutcome& last = c.attempts.back();
  for (auto it = last.messages.rbegin(); it != last.messages.rend(); ++it) {
    if ((*it).value("role", "") == "assistant") return (*it).value("content", "");
  }
  return last.candidate;
}

// {id: [reference solution]} for every problem that has one; a run where none has one (code,
// or only tool families without an obvious call) is a UsageError rather than an empty result.
std::map<std::string, json> reference_candidates(const std::vector<SynthItem>& items) {
  std::map<std::string, json> out;
  for (const auto& item : items) {
    auto it = item.problem.find("reference_solution");
    if (it != item.problem.end() && it->is_string()) out.emplace(item.id, json::array({*it}));
  }
  if (out.empty()) {
    throw UsageError(
        "--reference: these problems carry no reference solution (math has one; tool only "
        "for --family calc)");
  }
  return out;
}

std::map<std::string, json> read_candidates(const std::string& path,
                                            const std::set<std::string>& ids) {
  JsonlReader reader(path);
  std::map<std::string, json> out;
  json row;
  while (reader.next(&row)) {
    std::string id = require_string(row, "id", reader.where());
    const json& attempts = require_field(row, "attempts", reader.where());
    if (!attempts.is_array() || attempts.empty()) {
      throw InputError(reader.where("attempts"), "must be a non-empty list");
    }
    for (size_t i = 0; i < attempts.size(); ++i) {
      if (!attempts[i].is_string() && !attempts[i].is_array()) {
        throw InputError(reader.where("attempts[" + std::to_string(i) + "]"),
                         "must be a string (or, for tool use, a list of message strings)");
      }
    }
    if (!ids.count(id)) {
      throw InputError(reader.where("id"),
                       "no problem '" + id +
                           "' in this run (candidates "
                           "must come from the same --seed, --count and --difficulty)");
    }
    if (!out.emplace(id, attempts).second) {
      throw InputError(reader.where("id"), "duplicate candidates for '" + id + "'");
    }
  }
  return out;
}

// Self-correction with a model: round k generates attempt k for every problem still open (all
// of them at k = 0, then those whose last attempt failed) in one batch, then checks them.
void correct_with_model(const ModelSource& model, const std::vector<json>& heads,
                        const std::vector<Check>& checks, int max_attempts, int workers,
                        SynthResult* result) {
  std::vector<int64_t> open;
  for (size_t i = 0; i < result->items.size(); ++i) {
    SynthItem& item = result->items[i];
    item.has_candidates = true;
    item.correction.messages = heads[i];
    open.push_back(static_cast<int64_t>(i));
  }
  for (int k = 0; k < max_attempts && !open.empty(); ++k) {
    std::vector<json> dialogues;
    for (int64_t i : open) dialogues.push_back(next_dialogue(result->items[i].correction));
    auto generated = model.generate(dialogues, open, k);
    if (generated.size() != open.size()) {
      throw Error("synth --model: the generator returned " + std::to_string(generated.size()) +
                  " attempts for " + std::to_string(open.size()) + " dialogues");
    }
    parallel_for(static_cast<int64_t>(open.size()), workers, [&](int64_t j, int worker) {
      if (!generated[j]) return;
      json attempt = generated[j]->text;
      AttemptOutcome out = checks[open[j]](attempt, worker);
      out.prompt = dialogues[j];
      out.generation = generated[j]->generation;
      add_attempt(&result->items[open[j]].correction, attempt, std::move(out));
    });
    std::vector<int64_t> still_open;
    for (size_t j = 0; j < open.size(); ++j) {
      if (!generated[j]) {
        ++result->out_of_context;
        continue;
      }
      if (!result->items[open[j]].correction.kept) still_open.push_back(open[j]);
    }
    open = std::move(still_open);
  }
}

// Whether `attempts` is already one of the problem's stored chains. Each chain was written in
// one go, so by id its rows are consecutive and start at attempt 0.
bool chain_stored(std::vector<datastore::StoredAttempt> stored,
                  const std::vector<AttemptOutcome>& attempts) {
  std::sort(stored.begin(), stored.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  for (size_t start = 0; start < stored.size(); ++start) {
    if (stored[start].attempt != 0) continue;
    size_t n = 0;
    while (n < attempts.size() && start + n < stored.size() &&
           stored[start + n].attempt == static_cast<int>(n) &&
           stored[start + n].candidate == attempts[n].candidate &&
           stored[start + n].verdict == attempts[n].verdict) {
      ++n;
    }
    const bool chain_ends = start + n == stored.size() || stored[start + n].attempt == 0;
    if (n == attempts.size() && chain_ends) return true;
  }
  return false;
}

}  // namespace

json SynthItem::output_line() const {
  json line = problem;
  if (!has_candidates) return line;
  json attempts = json::array();
  for (size_t i = 0; i < correction.attempts.size(); ++i) {
    const auto& a = correction.attempts[i];
    attempts.push_back({{"attempt", i + 1},
                        {"candidate", a.candidate},
                        {"passed", a.passed},
                        {"verdict", a.verdict},
                        {"feedback", a.feedback},
                        {"details", a.details}});
    if (!a.generation.is_null()) attempts.back()["generation"] = a.generation;
  }
  line["attempts"] = attempts;
  line["kept"] = kept();
  if (!filtered.empty()) line["filtered"] = filtered;
  if (kept()) line["messages"] = correction.messages;
  return line;
}

json SynthResult::summary() const {
  json j = stats.to_json();
  j["problems"] = items.size();
  j["kept"] = kept;
  j["filtered"] = filtered;
  if (model) j["out_of_context"] = out_of_context;
  return j;
}

SynthResult run_synth(const SynthOptions& o) {
  if (o.count < 1 && !o.problems_file) throw UsageError("--count must be at least 1");
  if (o.max_attempts < 1) throw UsageError("--max-attempts must be at least 1");
  SynthResult result;
  std::vector<json> heads;
  std::vector<Check> checks;
  std::unique_ptr<Sandbox> sandbox;
  std::unique_ptr<ToolRegistry> registry;
  const int sources = int{o.candidates.has_value()} + int{o.model.has_value()} + int{o.reference};
  if (sources > 1) throw UsageError("give one of --candidates, --reference or --model");
  if ((!o.filter.families.empty() || o.filter.split != Split::kAll) && o.kind == Kind::kCode) {
    throw UsageError("--family and --split apply to math and tool problems");
  }
  const bool checking = sources == 1;
  if (checking && o.kind != Kind::kMath) sandbox = make_sandbox(o.sandbox);

  auto add = [&](json problem, json checker, json head, Check check) {
    SynthItem item;
    item.id = problem["id"].get<std::string>();
    item.problem = std::move(problem);
    item.checker = std::move(checker);
    result.items.push_back(std::move(item));
    heads.push_back(std::move(head));
    checks.push_back(std::move(check));
  };
  if (o.kind == Kind::kMath) {
    for (const auto& p : make_math_problems(o.seed, o.count, o.difficulty, o.filter)) {
      add(to_json(p), {{"answer", p.answer.decimal_or_fraction()}},
          json::array({{{"role", "user"}, {"content", p.prompt}}}),
          math_checker(p.answer, o.check_steps));
    }
  } else if (o.kind == Kind::kCode) {
    auto problems = o.problems_file ? load_code_problems(*o.problems_file)
                                    : make_code_problems(o.seed, o.count, o.difficulty);
    if (o.problems_file && o.count > 0 && static_cast<int64_t>(problems.size()) > o.count) {
      problems.resize(static_cast<size_t>(o.count));
    }
    for (const auto& p : problems) {
      add(to_json(p), {{"tests", p.tests_source()}},
          json::array({{{"role", "user"}, {"content", p.prompt()}}}),
          code_checker(p.tests, sandbox.get()));
    }
  } else {
    registry = std::make_unique<ToolRegistry>(sandbox.get(), documents(o.docs_dir));
    for (const auto& p : make_tool_problems(o.seed, o.count, o.difficulty, o.filter)) {
      add(to_json(p), {{"answer", p.answer}, {"tools", p.tools}},
          json::array({{{"role", "system"}, {"content", p.system}},
                       {{"role", "user"}, {"content", p.prompt}}}),
          tool_checker(p.answer, p.tools, registry.get(), o.require_tool_use));
    }
  }
  if (!checking) return result;

  if (o.model) {
    result.model = o.model;
    correct_with_model(*o.model, heads, checks, o.max_attempts, o.workers, &result);
  } else {
    std::set<std::string> ids;
    for (const auto& item : result.items) ids.insert(item.id);
    auto candidates = o.reference ? reference_candidates(result.items)
                                  : read_candidates(*o.candidates, ids);
    parallel_for(static_cast<int64_t>(result.items.size()), o.workers,
                 [&](int64_t i, int worker) {
                   SynthItem& item = result.items[i];
                   auto it = candidates.find(item.id);
                   if (it == candidates.end()) return;
                   item.has_candidates = true;
                   const Check& check = checks[i];
                   item.correction =
                       self_correct(heads[i], it->second, o.max_attempts,
                                    [&](const json& attempt) { return check(attempt, worker); });
                 });
  }

  // Filters on the kept dialogues, in problem order so the result is deterministic.
  ExactDedup exact;
  NearDupIndex near(MinHash(64, 5), o.near_dup_threshold > 0 ? o.near_dup_threshold : 2.0);
  for (auto& item : result.items) {
    if (!item.has_candidates) continue;
    result.stats.add(item.correction);
    if (!item.correction.kept) continue;
    std::string text = final_text(item.correction);
    if (!o.length.ok(text))
      item.filtered = "length";
    else if (!exact.add(text))
      item.filtered = "exact_duplicate";
    else if (o.near_dup_threshold > 0 && !near.add(text))
      item.filtered = "near_duplicate";
    if (item.filtered.empty())
      ++result.kept;
    else
      ++result.filtered[item.filtered];
  }
  return result;
}

void write_store(const SynthResult& result, const std::string& db, Kind kind, int round,
                 const std::string& source) {
  auto store = datastore::Store::open(db);
  auto tx = store.transaction();
  std::optional<int64_t> checkpoint_id;
  if (result.model) {
    // The policy that wrote the attempts, by its canonical path (as `average` records it).
    std::string path = std::filesystem::weakly_canonical(result.model->checkpoint).string();
    auto known = store.checkpoint_by_path(path);
    checkpoint_id = known ? known->id : store.add_checkpoint(path, "external", 0);
  }
  for (const auto& item : result.items) {
    datastore::SyntheticProblem problem;
    problem.kind = kind_name(kind);
    problem.spec = item.problem;
    problem.checker = item.checker;
    problem.round = round;
    problem.source = source;
    int64_t problem_id = store.add_synthetic_problem(problem);
    if (!item.has_candidates) continue;
    const auto& attempts = item.correction.attempts;
    // A re-run of the same problem with the same candidates must not duplicate attempts; a new
    // chain (other candidates, another sampling seed) is added beside the stored ones.
    if (!chain_stored(store.synthetic_attempts(problem_id), attempts)) {
      for (size_t i = 0; i < attempts.size(); ++i) {
        datastore::SyntheticAttempt a;
        a.problem_id = problem_id;
        a.attempt = static_cast<int>(i);
        a.candidate = attempts[i].candidate;
        a.verdict = attempts[i].verdict;
        a.feedback = attempts[i].feedback;
        if (result.model && !attempts[i].prompt.is_null() && !attempts[i].candidate.empty()) {
          // A model's attempt is also a response to the dialogue it answered (an empty one
          // cannot be: the store refuses empty content).
          datastore::NewResponse r;
          r.prompt_id = store.add_prompt(attempts[i].prompt, source);
          r.content = attempts[i].candidate;
          r.checkpoint_id = checkpoint_id;
          r.round = round;
          if (attempts[i].generation.contains("tokens")) {
            r.token_count = attempts[i].generation["tokens"].get<int64_t>();
          }
          r.sampling = result.model->sampling;
          a.response_id = store.add_response(r);
        }
        store.add_synthetic_attempt(a);
      }
    }
    if (item.kept()) {
      datastore::KeptDialogue d;
      d.messages = item.correction.messages;
      d.problem_id = problem_id;
      d.source = source;
      d.round = round;
      // Kept means checked by execution: it is this round's SFT data (Store::selected_samples).
      store.add_selection(round, datastore::SampleKind::kDialogue, store.add_kept_dialogue(d),
                          "synth " + problem.kind + ": passed");
    }
  }
  tx.commit();
}

std::pair<int64_t, int64_t> run_verify(const VerifyOptions& o, const std::string& input,
                                       const std::string& output) {
  JsonlReader reader(input);
  std::vector<json> rows;
  std::vector<Check> checks;
  std::vector<json> attempts;
  std::unique_ptr<Sandbox> sandbox;
  std::unique_ptr<ToolRegistry> registry;
  json row;
  while (reader.next(&row)) {
    require_string(row, "id", reader.where());
    require_string(row, "prompt", reader.where());
    const json& response = require_field(row, "response", reader.where());
    if (!response.is_string() && !(o.kind == Kind::kTool && response.is_array())) {
      throw InputError(reader.where("response"), "must be a string");
    }
    if (o.kind == Kind::kMath) {
      const json& answer = require_field(row, "answer", reader.where());
      std::string text = answer.is_string()   ? answer.get<std::string>()
                         : answer.is_number() ? answer.dump()
                                              : "";
      auto value = parse_number(text);
      if (!value) throw InputError(reader.where("answer"), "is not a number: " + answer.dump());
      checks.push_back(math_checker(*value, o.check_steps));
    } else if (o.kind == Kind::kCode) {
      const json& tests = require_field(row, "tests", reader.where());
      std::vector<std::string> list;
      if (tests.is_string()) {
        list = split_tests(tests.get<std::string>());
      } else if (tests.is_array()) {
        for (size_t i = 0; i < tests.size(); ++i) {
          if (!tests[i].is_string()) {
            throw InputError(reader.where("tests[" + std::to_string(i) + "]"), "must be a string");
          }
          list.push_back(tests[i].get<std::string>());
        }
      }
      if (list.empty()) throw InputError(reader.where("tests"), "must hold at least one assert");
      if (!sandbox) sandbox = make_sandbox(o.sandbox);
      checks.push_back(code_checker(list, sandbox.get()));
    } else {
      const json& tools = require_field(row, "tools", reader.where());
      std::vector<std::string> names;
      if (!tools.is_array()) throw InputError(reader.where("tools"), "must be a list of names");
      for (size_t i = 0; i < tools.size(); ++i) {
        std::string f = "tools[" + std::to_string(i) + "]";
        if (!tools[i].is_string()) throw InputError(reader.where(f), "must be a string");
        std::string name = tools[i].get<std::string>();
        if (name != "calculator" && name != "lookup" && name != "python") {
          throw InputError(reader.where(f),
                           "unknown tool '" + name + "' (calculator, lookup, python)");
        }
        names.push_back(name);
        if (name == "python" && !sandbox) sandbox = make_sandbox(o.sandbox);
      }
      json answer = row.contains("answer") ? row["answer"] : json();
      checks.push_back(nullptr);  // filled once the registry (and its sandbox) exists
      attempts.push_back(json{{"tools", names}, {"answer", answer}});
    }
    rows.push_back(row);
  }
  if (o.kind == Kind::kTool) {
    registry = std::make_unique<ToolRegistry>(sandbox.get(), documents(o.docs_dir));
    for (size_t i = 0; i < rows.size(); ++i) {
      checks[i] =
          tool_checker(attempts[i]["answer"], attempts[i]["tools"].get<std::vector<std::string>>(),
                       registry.get(), o.require_tool_use);
    }
  }
  std::vector<AttemptOutcome> outcomes(rows.size());
  parallel_for(static_cast<int64_t>(rows.size()), o.workers, [&](int64_t i, int worker) {
    outcomes[i] = checks[i](rows[i]["response"], worker);
  });
  JsonlWriter writer(output);
  int64_t passed = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    json out = rows[i];
    out["passed"] = outcomes[i].passed;
    out["verdict"] = outcomes[i].verdict;
    out["feedback"] = outcomes[i].feedback;
    out["details"] = outcomes[i].details;
    if (o.kind == Kind::kTool) out["messages"] = outcomes[i].messages;
    passed += outcomes[i].passed;
    writer.write(out);
  }
  writer.close();
  return {static_cast<int64_t>(rows.size()), passed};
}

}  // namespace posttrain::synthetic
