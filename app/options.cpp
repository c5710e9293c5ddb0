#include "app/options.h"

#include <iostream>

#include "common/error.h"

namespace posttrain::app {

void add_output_option(po::options_description& desc, const std::string& help) {
  desc.add_options()("output", po::value<std::string>(), help.c_str())(
      "out", po::value<std::string>(), "alias of --output");
}

std::optional<std::string> output_path(const po::variables_map& vm) {
  bool a = vm.count("output"), b = vm.count("out");
  if (a && b) throw UsageError("give --output or --out, not both");
  if (a) return vm["output"].as<std::string>();
  if (b) return vm["out"].as<std::string>();
  return std::nullopt;
}

std::string require_output(const po::variables_map& vm, const std::string& command) {
  auto out = output_path(vm);
  if (!out) throw UsageError(command + ": --output is required");
  return *out;
}

bool parse_options(const std::string& usage, po::options_description& desc,
                   const std::vector<std::string>& args, po::variables_map* vm,
                   const std::vector<std::pair<std::string, int>>& positional) {
  desc.add_options()("help,h", "show this help");
  po::positional_options_description pos;
  for (const auto& [name, count] : positional) pos.add(name.c_str(), count);
  try {
    po::store(po::command_line_parser(args).options(desc).positional(pos).run(), *vm);
    if (vm->count("help")) {
      std::cout << usage << "\n\n" << desc << "\n";
      return false;
    }
    po::notify(*vm);
  } catch (const po::error& e) {
    throw UsageError(std::string(e.what()) + " (see --help)");
  }
  return true;
}

}  // namespace posttrain::app
