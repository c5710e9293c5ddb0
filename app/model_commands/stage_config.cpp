#include "app/model_commands/stage_config.h"

#include <iostream>

#include "app/options.h"
#include "common/error.h"

namespace posttrain::app {

std::optional<nlohmann::json> load_stage_config(
    const core::ConfigSchema& schema, const std::string& usage_head,
    const std::vector<std::string>& args,
    const std::function<void(const nlohmann::json&)>& cross_checks) {
  po::options_description desc("options");
  desc.add_options()("config", po::value<std::string>(), "config file: JSON (// comments allowed), or YAML when it ends in .yaml/.yml")(
      "set", po::value<std::vector<std::string>>()->composing(),
      "override one key: --set section.key=value (repeatable; JSON values, or plain strings)")(
      "print-config", po::bool_switch(), "print the resolved config (defaults filled) and exit");
  add_output_option(desc, "alias of --set output.dir=DIR");
  const std::string usage = usage_head + "config keys:\n" + schema.describe();
  po::variables_map vm;
  if (!parse_options(usage, desc, args, &vm)) return std::nullopt;
  if (!vm.count("config")) throw UsageError("--config is required (see --help)");
  std::vector<std::string> sets;
  if (vm.count("set")) sets = vm["set"].as<std::vector<std::string>>();
  if (auto out = output_path(vm)) sets.push_back("output.dir=" + *out);
  const nlohmann::json resolved = schema.load(vm["config"].as<std::string>(), sets);
  cross_checks(resolved);
  if (vm["print-config"].as<bool>()) {
    std::cout << resolved.dump(2) << "\n";
    return std::nullopt;
  }
  return resolved;
}

}  // namespace posttrain::app
