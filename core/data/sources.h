// The `data.sources` config value every training stage takes: a list of JSONL paths or
// {"path": P, "weight": W > 0} objects. One check for sft, reward and dpo schemas.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace posttrain::core {

// What is wrong with `sources` ("[1].weight: expected a number > 0", a missing path, ...), or ""
// when it is fine. For ConfigKey::check.
std::string check_data_sources(const nlohmann::json& sources);

}  // namespace posttrain::core
