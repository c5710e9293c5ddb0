// In-process steps of the eval stage (see eval_results.h).
#include "recipes/eval_results.h"

#include <filesystem>
#include <fstream>
#include <map>

#include "common/error.h"
#include "common/jsonl.h"

namespace posttrain::recipes {
namespace {

using nlohmann::json;

std::vector<json> read_rows(const std::string& path) {
  std::vector<json> rows;
  JsonlReader reader(path);
  json row;
  while (reader.next(&row)) rows.push_back(std::move(row));
  return rows;
}

void write_rows(const std::vector<json>& rows, const std::string& path) {
  JsonlWriter out(path);
  for (const auto& r : rows) out.write(r);
  out.close();
}

// The first sample's text of a generate output row.
std::string first_sample(const json& row, const Location& where) {
  const json& samples = require_field(row, "samples", where);
  if (!samples.is_array() || samples.empty()) {
    throw InputError({where.file, where.line, "samples"}, "expected at least one sample");
  }
  return samples[0].value("text", "");
}

// A prompt and one answer to it as one `reward score` row, always as messages: an empty answer
// (a policy that stops at once) is an empty assistant turn there, where prompt + completion
// would refuse it.
json scored_row(const json& prompt, const json& answer, const Location& where) {
  json messages = json::array();
  if (prompt.is_string()) {
    messages.push_back({{"role", "user"}, {"content", prompt}});
  } else if (prompt.is_array()) {
    messages = prompt;
  } else {
    throw InputError(where, "expected the prompt as a string or a list of messages");
  }
  if (answer.is_string()) {
    messages.push_back({{"role", "assistant"}, {"content", answer}});
  } else if (answer.is_array()) {
    for (const auto& m : answer) messages.push_back(m);
  } else {
    throw InputError(where, "expected the response as a string or a list of messages");
  }
  return {{"messages", messages}};
}

// {"value": passed / total, "details": {"n", "passed"}} of a verify output.
json verified_share(const std::string& verdicts) {
  int64_t total = 0, passed = 0;
  for (const json& row : read_rows(verdicts)) {
    ++total;
    if (row.value("passed", false)) ++passed;
  }
  if (total == 0) throw Error("eval: no verdicts in " + verdicts);
  return {{"value", static_cast<double>(passed) / static_cast<double>(total)},
          {"details", {{"n", total}, {"passed", passed}}}};
}

json reward_accuracy(const std::string& scores) {
  std::map<int64_t, std::map<std::string, double>> by_pair;  // pair -> side -> reward
  for (const json& row : read_rows(scores)) {
    by_pair[row.at("pair").get<int64_t>()][row.at("side").get<std::string>()] =
        row.at("reward").get<double>();
  }
  if (by_pair.empty()) throw Error("eval: no scores in " + scores);
  int64_t right = 0;
  for (auto& [pair, sides] : by_pair) {
    if (sides.at("chosen") > sides.at("rejected")) ++right;  // a tie counts as wrong
  }
  const auto n = static_cast<int64_t>(by_pair.size());
  return {{"value", static_cast<double>(right) / static_cast<double>(n)},
          {"details", {{"n", n}, {"right", right}}}};
}

// Mean DPO reward margin and accuracy from `dpo eval`'s per-pair rows.
std::pair<json, json> dpo_margin_accuracy(const std::string& pairs) {
  double margin = 0;
  int64_t n = 0, right = 0;
  for (const json& row : read_rows(pairs)) {
    const double d =
        row.at("chosen_reward").get<double>() - row.at("rejected_reward").get<double>();
    margin += d;
    if (d > 0) ++right;
    ++n;
  }
  if (n == 0) throw Error("eval: no pairs in " + pairs);
  const json details = {{"n", n}, {"right", right}};
  return {{{"value", margin / static_cast<double>(n)}, {"details", details}},
          {{"value", static_cast<double>(right) / static_cast<double>(n)}, {"details", details}}};
}

json win_rate(const std::string& new_scores, const std::string& old_scores) {
  std::map<std::string, double> old_reward;
  for (const json& row : read_rows(old_scores)) {
    old_reward[row.at("id").dump()] = row.at("reward").get<double>();
  }
  double wins = 0;
  int64_t n = 0;
  for (const json& row : read_rows(new_scores)) {
    const double r_new = row.at("reward").get<double>();
    const double r_old = old_reward.at(row.at("id").dump());
    wins += r_new > r_old ? 1.0 : (r_new == r_old ? 0.5 : 0.0);
    ++n;
  }
  if (n == 0) throw Error("eval: no scores in " + new_scores);
  return {{"value", wins / static_cast<double>(n)}, {"details", {{"n", n}, {"wins", wins}}}};
}

}  // namespace

void write_verify_input(const std::string& generated, const std::string& output) {
  std::vector<json> out;
  JsonlReader reader(generated);
  json row;
  while (reader.next(&row)) {
    const std::string text = first_sample(row, reader.where());
    row.erase("samples");
    row.erase("prompt_ids");
    row["response"] = text;
    out.push_back(std::move(row));
  }
  if (out.empty()) throw Error("eval: generate wrote no answers in " + generated);
  write_rows(out, output);
}

void write_tool_turn_input(const std::string& dir, int turn) {
  std::vector<json> dialogues;
  std::map<std::string, json> executed;  // id -> messages after the assistant's tool calls
  if (turn == 0) {
    for (json& problem : read_rows(dir + "/problems.jsonl")) {
      dialogues.push_back({{"problem", problem}, {"assistant", json::array()}, {"open", true}});
    }
    write_rows(dialogues, dir + "/dialogues.jsonl");
  } else {
    dialogues = read_rows(dir + "/dialogues.jsonl");
    for (const json& row :
         read_rows(dir + "/turn-" + std::to_string(turn - 1) + ".executed.jsonl")) {
      executed[row.at("id").dump()] = row.at("messages");
    }
  }
  std::vector<json> rows;
  for (const json& d : dialogues) {
    if (!d["open"].get<bool>()) continue;
    const json& p = d["problem"];
    json messages = json::array();
    if (p.contains("system")) messages.push_back({{"role", "system"}, {"content", p["system"]}});
    messages.push_back({{"role", "user"}, {"content", p.at("prompt")}});
    if (turn > 0) {
      for (const json& m : executed.at(p.at("id").dump())) messages.push_back(m);
    }
    rows.push_back({{"id", p.at("id")}, {"messages", messages}});
  }
  write_rows(rows, dir + "/turn-" + std::to_string(turn) + ".jsonl");
}

void collect_tool_turn(const std::string& dir, int turn) {
  const std::string name = dir + "/turn-" + std::to_string(turn);
  std::map<std::string, std::string> answers;  // id -> this turn's assistant message
  JsonlReader reader(name + ".generated.jsonl");
  json row;
  while (reader.next(&row)) answers[row.at("id").dump()] = first_sample(row, reader.where());
  std::vector<json> dialogues = read_rows(dir + "/dialogues.jsonl"), open;
  for (json& d : dialogues) {
    auto it = answers.find(d["problem"].at("id").dump());
    if (!d["open"].get<bool>() || it == answers.end()) continue;
    d["assistant"].push_back(it->second);
    // A message with <|python_tag|> calls a tool: the dialogue goes on after its result.
    d["open"] = it->second.find("<|python_tag|>") != std::string::npos;
    if (d["open"].get<bool>()) {
      json v = d["problem"];
      v["response"] = d["assistant"];
      open.push_back(std::move(v));
    }
  }
  write_rows(dialogues, dir + "/dialogues.jsonl");
  write_rows(open, name + ".open.jsonl");
}

void write_tool_verify_input(const std::string& dir, const std::string& output) {
  std::vector<json> rows;
  for (const json& d : read_rows(dir + "/dialogues.jsonl")) {
    json v = d["problem"];
    v["response"] = d["assistant"];
    rows.push_back(std::move(v));
  }
  if (rows.empty()) throw Error("eval: no tool dialogues in " + dir);
  write_rows(rows, output);
}

void copy_prompt_rows(const std::string& input, const std::string& output) {
  std::vector<json> rows;
  JsonlReader reader(input);
  json row;
  while (reader.next(&row)) {
    const json& prompt = require_field(row, "prompt", reader.where());
    if (!prompt.is_string() && !prompt.is_array()) {
      throw InputError(reader.where("prompt"), "expected a string or a list of messages");
    }
    rows.push_back({{"id", row.value("id", json("prompt-" + std::to_string(reader.line())))},
                    {"prompt", prompt}});
  }
  if (rows.empty()) throw InputError({input, 0, ""}, "no prompts");
  write_rows(rows, output);
}

void write_pair_score_input(const std::string& pairs, const std::string& output) {
  std::vector<json> rows;
  JsonlReader reader(pairs);
  json row;
  int64_t pair = 0;
  while (reader.next(&row)) {
    const json& chosen = require_field(row, "chosen", reader.where());
    const json& rejected = require_field(row, "rejected", reader.where());
    for (const auto& [side, answer] : {std::pair{"chosen", &chosen}, {"rejected", &rejected}}) {
      if (!row.contains("prompt") && !answer->is_array()) {
        throw InputError(reader.where(side), "a pair without a prompt needs message lists");
      }
      json scored = row.contains("prompt") ? scored_row(row["prompt"], *answer, reader.where(side))
                                           : json{{"messages", *answer}};
      scored["pair"] = pair;
      scored["side"] = side;
      rows.push_back(std::move(scored));
    }
    ++pair;
  }
  if (rows.empty()) throw InputError({pairs, 0, ""}, "no pairs");
  write_rows(rows, output);
}

void write_answer_score_input(const std::string& generated, const std::string& output) {
  std::vector<json> rows;
  JsonlReader reader(generated);
  json row;
  while (reader.next(&row)) {
    json scored = scored_row(require_field(row, "prompt", reader.where()),
                             first_sample(row, reader.where()), reader.where("prompt"));
    scored["id"] = row.at("id");
    rows.push_back(std::move(scored));
  }
  write_rows(rows, output);
}

void write_eval_results(const json& config, const std::string& out_dir) {
  json evals = json::object();
  if (config.contains("math"))
    evals["heldout_accuracy"] = verified_share(out_dir + "/math/verdicts.jsonl");
  if (config.contains("tool"))
    evals["tool_accuracy"] = verified_share(out_dir + "/tool/verdicts.jsonl");
  if (config.contains("code"))
    evals["code_pass_at_1"] = verified_share(out_dir + "/code/verdicts.jsonl");
  if (config.contains("reward"))
    evals["reward_accuracy"] = reward_accuracy(out_dir + "/reward/scores.jsonl");
  if (config.contains("dpo")) {
    std::tie(evals["dpo_margin"], evals["dpo_accuracy"]) =
        dpo_margin_accuracy(out_dir + "/dpo/scored.jsonl");
  }
  if (config.contains("win_rate")) {
    evals["win_rate"] = win_rate(out_dir + "/win_rate/new.scores.jsonl",
                                 out_dir + "/win_rate/previous.scores.jsonl");
  }
  // Held-out items left out as training data (recipes/heldout.h), per eval.
  std::map<std::string, int64_t> left_out;
  if (std::filesystem::exists(out_dir + "/heldout.jsonl")) {
    for (const json& row : read_rows(out_dir + "/heldout.jsonl")) {
      if (row.contains("training")) ++left_out[row.at("eval").get<std::string>()];
    }
  }
  const std::map<std::string, std::string> eval_of = {
      {"heldout_accuracy", "math"},  {"tool_accuracy", "tool"}, {"code_pass_at_1", "code"},
      {"reward_accuracy", "reward"}, {"dpo_margin", "dpo"},     {"dpo_accuracy", "dpo"},
      {"win_rate", "win_rate"}};
  for (auto& [name, value] : evals.items()) {
    value["details"]["left_out_as_training"] = left_out[eval_of.at(name)];
  }
  std::ofstream out(out_dir + "/evals.json", std::ios::trunc);
  out << evals.dump(2) << "\n";
  if (!out) throw IoError("cannot write " + out_dir + "/evals.json");
}

}  // namespace posttrain::recipes
