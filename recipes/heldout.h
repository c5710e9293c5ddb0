// Held-out data never trains. Two checks, one before the run and one at each eval:
//  - check_heldout_disjoint (part of check_recipe): an eval's synthetic held-out set (kind and
//    seed: synth's problems are a function of them, `math-SEED-K`) made by a synth stage of the
//    recipe too, or an eval's pair/prompt file read as a training source (data.sources of an
//    sft, reward or dpo stage), is an InputError naming both stages.
//  - exclude_training_prompts (the eval stage, before any model runs): the SHA-256 of each
//    held-out prompt text (a string prompt, or each user message) against the prompt texts the
//    store holds for training (prompts, synthetic problems, dialogues). A held-out item whose
//    prompt is training data is left out of the eval and flagged (OUT/heldout.jsonl, stdout,
//    the metric's details); an eval left with nothing fails the stage. Synthetic sets of other
//    seeds can still repeat a prompt text: code prompts are a family's description and
//    signature whatever the seed, and small math/tool templates repeat by chance.
// OUT/heldout.jsonl: one line per held-out item, {"eval", "id", "sha256": [...], "training"?}.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "recipes/recipe.h"

namespace posttrain::recipes {

// The texts a prompt stands for: the string itself, or each user message's content.
std::vector<std::string> prompt_texts(const nlohmann::json& prompt);

// Filters each held-out file of a default-filled eval config in place (OUT/EVAL/problems.jsonl,
// OUT/reward/pairs.jsonl, OUT/dpo/pairs.jsonl) against the store at `store` ("" or a missing
// file: nothing is training data) and writes OUT/heldout.jsonl. Returns the items left out
// per eval; InputError when an eval has none left.
std::map<std::string, int64_t> exclude_training_prompts(const nlohmann::json& config,
                                                        const std::string& out_dir,
                                                        const std::string& store);

// The recipe-level check (see above) over the first `rounds` rounds.
void check_heldout_disjoint(const Recipe& recipe, int rounds);

}  // namespace posttrain::recipes
