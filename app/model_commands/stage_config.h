// The options every training stage's command shares: --config FILE, --set section.key=value
// (repeatable), --output DIR (alias of --set output.dir=DIR) and --print-config, with the
// stage's config keys listed under --help. One place, so sft, reward train and dpo train parse
// and report them alike.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/train/config.h"

namespace posttrain::app {

// Parses `args`, loads and resolves the config against `schema`, runs `cross_checks` on it (a
// stage's checks across keys, before anything loads). Returns nullopt when --help or
// --print-config was served (the caller returns 0). usage_head ends with a blank line; the
// schema's key list is appended under "config keys:".
std::optional<nlohmann::json> load_stage_config(
    const core::ConfigSchema& schema, const std::string& usage_head,
    const std::vector<std::string>& args,
    const std::function<void(const nlohmann::json&)>& cross_checks);

}  // namespace posttrain::app
