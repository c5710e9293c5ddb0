// The in-process steps of the eval stage (recipes/evals.h): each reshapes one `posttrain`
// command's JSONL output into the next command's input, and write_eval_results reduces the
// verdicts and scores to OUT/evals.json. File names are relative to an eval's folder
// (OUT/math, OUT/tool, ...). Every reader names the file and line of a bad row.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace posttrain::recipes {

// generate's rows (problem fields + "samples") -> verify's: the problem's fields with
// "response" = the first sample's text.
void write_verify_input(const std::string& generated, const std::string& output);

// Tool dialogues, turn by turn, in `dir` (dialogues.jsonl holds each problem, its assistant
// messages so far and whether it is still open, i.e. its last message called a tool).
// Turn 0: problems.jsonl -> turn-0.jsonl ({"id", "messages": [system, user]}). Turn t > 0: the
// open dialogues with turn-(t-1).executed.jsonl's messages (assistant turns and the ipython
// results verify executed) -> turn-t.jsonl.
void write_tool_turn_input(const std::string& dir, int turn);
// turn-t.generated.jsonl -> the dialogues; the still-open ones to turn-t.open.jsonl (verify's
// input: the problem with "response" = the assistant messages so far).
void collect_tool_turn(const std::string& dir, int turn);
// Every dialogue as verify's input.
void write_tool_verify_input(const std::string& dir, const std::string& output);

// Rows with a "prompt" (string or message list), ids added where missing ("prompt-LINE").
void copy_prompt_rows(const std::string& input, const std::string& output);

// Held-out pairs (prompt + chosen/rejected as strings or message lists, or implicit-prompt
// message lists) -> two `reward score` rows per pair: {"pair": i, "side": "chosen"|"rejected",
// "messages": prompt + response}.
void write_pair_score_input(const std::string& pairs, const std::string& output);
// generate's rows -> `reward score` rows {"id", "messages": prompt + the first sample}.
void write_answer_score_input(const std::string& generated, const std::string& output);

// Reads the results of each eval `config` names under out_dir and writes out_dir/evals.json:
// {"heldout_accuracy": {"value": x, "details": {...}}, ...} (names in evals.h).
void write_eval_results(const nlohmann::json& config, const std::string& out_dir);

}  // namespace posttrain::recipes
