// posttrain sft --config FILE [--set section.key=value ...]: supervised fine-tuning. The config
// is validated in full before anything loads; --help lists every key with its default.
#include <iostream>

#include "app/command.h"
#include "app/options.h"
#include "sft/sft.h"

namespace posttrain::app {
namespace {

int run_sft_command(const std::vector<std::string>& args) {
  const auto schema = sft::sft_schema();
  po::options_description desc("options");
  desc.add_options()("config", po::value<std::string>(), "JSON config file (// comments allowed)")(
      "set", po::value<std::vector<std::string>>()->composing(),
      "override one key: --set section.key=value (repeatable; JSON values, or plain strings)")(
      "print-config", po::bool_switch(), "print the resolved config (defaults filled) and exit");
  add_output_option(desc, "alias of --set output.dir=DIR");
  const std::string usage =
      "usage: posttrain sft --config FILE [--set section.key=value ...]\n\n"
      "Supervised fine-tuning. Data lines: {\"messages\": [{\"role\", \"content\", \"weight\"?: "
      "0|1}]}\nor {\"prompt\", \"completion\"}. Loss on weighted assistant turns plus their end "
      "token.\nOutput: OUT/checkpoint-<step>/, the final model in OUT/, OUT/metrics.jsonl. "
      "Running the\nsame command again resumes from the newest checkpoint. Data parallel: start "
      "it with\n`posttrain launch --nproc N -- posttrain sft ...` or torchrun-style environment "
      "variables.\n\nconfig keys:\n" +
      schema.describe();
  po::variables_map vm;
  if (!parse_options(usage, desc, args, &vm)) return 0;
  if (!vm.count("config")) throw UsageError("--config is required (see --help)");
  std::vector<std::string> sets;
  if (vm.count("set")) sets = vm["set"].as<std::vector<std::string>>();
  if (auto out = output_path(vm)) sets.push_back("output.dir=" + *out);
  const nlohmann::json resolved = schema.load(vm["config"].as<std::string>(), sets);
  sft::sft_data_options(resolved);  // cross-key checks before anything loads
  if (vm["print-config"].as<bool>()) {
    std::cout << resolved.dump(2) << "\n";
    return 0;
  }
  sft::run_sft(resolved);
  return 0;
}

}  // namespace

POSTTRAIN_COMMAND("sft", "supervised fine-tuning from a JSON config", run_sft_command);

}  // namespace posttrain::app
