// Placeholders in recipe stage configs, replaced when the stage runs:
//   ${policy}        the newest policy checkpoint (the starting model, then each sft / dpo /
//                    average output in order)
//   ${previous_policy} the policy at the start of this round (the starting model in round 0)
//   ${reward_model}  the newest reward-model checkpoint
//   ${round}         the round number (an integer when it is the whole string)
//   ${store}         the store's path
//   ${out}           this stage's output folder (OUT/round-R/NAME)
//   ${run_dir}       the recipe's output folder
//   ${stage:NAME}    the output folder of stage NAME, earlier in the same round
// Anything else after "${" is an error naming the key.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain::recipes {

// The placeholder names used anywhere inside `value` ("policy", "stage:sft", ...), in order.
// Throws InputError (naming `where` and the key) for "${" without "}" or an unknown name.
std::vector<std::string> placeholders_in(const nlohmann::json& value, const std::string& where);

// Replaces every placeholder in every string of `value` by lookup(name); a string that is
// exactly "${round}" becomes the integer. lookup returns nullopt for a name with no value yet
// (an InputError naming `where`).
nlohmann::json substitute(const nlohmann::json& value,
                          const std::function<std::optional<std::string>(const std::string&)>& lookup,
                          const std::string& where);

}  // namespace posttrain::recipes
