// Held-out data never trains. Two checks, one before the run and one at each eval:
//  - check_heldout_disjoint (part of check_recipe): an eval's synthetic held-out set (kind and
//    seed: synth's problems are a function of them, `math-SEED-K`) made by a synth stage of the
//    recipe too, or an eval's pair/prompt file read as a training source (data.sources of an
//    sft, reward or dpo stage), is an InputError naming both stages.
//  - check_store_disjoint (the eval stage, before any model runs): the SHA-256 of each held-out
//    prompt text (a string prompt, or each user message) against the prompt texts the store
//    holds for training (prompts, synthetic problems, dialogues); a match is an InputError
//    naming the eval's item and the store's row, and the eval stage fails.
// The eval stage writes its hashes to OUT/heldout.jsonl ({"eval", "id", "sha256"}).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "recipes/recipe.h"

namespace posttrain::recipes {

struct HeldoutPrompt {
  std::string eval;    // "math", "reward", ...
  std::string id;      // the problem's id, or "LINE" of a pair file
  std::string sha256;  // hex of the prompt text
};

// The texts a prompt stands for: the string itself, or each user message's content.
std::vector<std::string> prompt_texts(const nlohmann::json& prompt);

// The held-out prompts of a default-filled eval config: its problem files under out_dir
// (OUT/EVAL/problems.jsonl) and its pair files.
std::vector<HeldoutPrompt> heldout_prompts(const nlohmann::json& config,
                                           const std::string& out_dir);
void write_heldout(const std::vector<HeldoutPrompt>& prompts, const std::string& path);

// InputError when a held-out prompt is a training prompt of the store at `store` ("" or a
// missing file: nothing to check).
void check_store_disjoint(const std::vector<HeldoutPrompt>& prompts, const std::string& store);

// The recipe-level check (see above) over the first `rounds` rounds.
void check_heldout_disjoint(const Recipe& recipe, int rounds);

}  // namespace posttrain::recipes
