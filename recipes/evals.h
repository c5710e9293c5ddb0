// The recipe's `eval` stage kind: per round, on held-out data, the evaluations the config names.
//
//   {"math":     {"count": 50, "seed": 9001, "difficulty": "easy", "max_new_tokens": 128},
//    "tool":     {"count": 20, "seed": 9002, "max_turns": 3},
//    "code":     {"count": 20, "seed": 9003},
//    "reward":   {"pairs": "heldout_pairs.jsonl"},
//    "dpo":      {"pairs": "heldout_pairs.jsonl", "reference": "${previous_policy}", "beta": 0.1},
//    "win_rate": {"count": 20, "seed": 9004, "kind": "math"},   // or {"prompts": "p.jsonl"}
//    "model": "${policy}", "reward_model": "${reward_model}", "max_new_tokens": 128}
//
// Each eval is its own `posttrain` commands (synth, generate --temperature 0, verify, reward
// score, dpo eval) plus small in-process steps that reshape one command's output into the
// next's input (recipes/eval_steps.h) and reduce the results to OUT/evals.json:
//   math      heldout_accuracy   greedy answers passing `verify --kind math`
//   tool      tool_accuracy      greedy dialogues (tool calls executed between turns) passing
//                                `verify --kind tool`
//   code      code_pass_at_1     greedy programs passing `verify --kind code` (sandbox)
//   reward    reward_accuracy    pairs whose chosen response outscores the rejected one under
//                                the reward model (a tie counts as wrong, as in training)
//   dpo       dpo_margin, dpo_accuracy   `dpo eval` of model against reference: mean
//                                beta * ((pi_c - ref_c) - (pi_r - ref_r)), share above 0
//   win_rate  win_rate           greedy answers of model vs previous (the policy at the start
//                                of the round) scored by the reward model: win 1, tie 0.5
// The old flat form {"kind": "math", "count": ..., "seed": ..., "difficulty": ...,
// "max_new_tokens": ...} still works: it is {"math": {...}}.
//
// Held-out data never trains (recipes/heldout.h): the recipe check refuses an eval whose
// problems a synth stage of the recipe also makes, or whose pair/prompt files a training stage
// reads; at run time the stage hashes its held-out prompts into OUT/heldout.jsonl and refuses
// to run when any of them is a training prompt of the store.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "recipes/stage_kinds.h"

namespace posttrain::recipes {

// The evals an eval config can run, in the order they run.
const std::vector<std::string>& eval_names();

// Default seeds of the synthetic held-out sets: far from synth's default seed 0 and from each
// other, so the default split is disjoint (tests/recipes/evals_test.cpp checks it).
constexpr int kMathEvalSeed = 9001, kToolEvalSeed = 9002, kCodeEvalSeed = 9003,
              kWinRateEvalSeed = 9004;

// StageKind hooks of "eval" (see stage_kinds.h for the contracts).
nlohmann::json eval_defaults(const nlohmann::json& config, const std::string& where);
void eval_check(const nlohmann::json& config, const std::string& where,
                const std::vector<std::string>& unchecked, bool skip_paths);
std::vector<StageStep> eval_steps(const nlohmann::json& config, const StageRun& run);

}  // namespace posttrain::recipes
