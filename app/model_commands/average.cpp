// `posttrain average --output DIR CKPT... [--weights w1,w2,...] [--store DB] [--round R]`:
// the weighted mean of checkpoints of one architecture (see recipes/average.h).
#include "recipes/average.h"

#include <iomanip>
#include <iostream>

#include "app/command.h"
#include "app/options.h"
#include "common/error.h"

namespace posttrain::app {
namespace {

const char* kUsage =
    "usage: posttrain average --output DIR CKPT CKPT... [--weights w1,w2,...] [--store DB] "
    "[--round R] [--overwrite]\n"
    "Writes the weighted mean of Hugging Face checkpoints of one architecture. config.json\n"
    "(ignoring _name_or_path, transformers_version, torch_dtype, dtype, use_cache), tensor names\n"
    "and shapes, and tokenizer files must match. Weights are positive and normalised to sum 1\n"
    "(default: uniform). Tensors are streamed one at a time, accumulated in float32 and written\n"
    "in the first checkpoint's dtype and sharding; config, generation config and tokenizer\n"
    "files are copied from it. --store records DIR as stage 'average' with the inputs as parents.\n"
    "A non-empty DIR is refused unless --overwrite is given.";

int run_average(const std::vector<std::string>& args) {
  po::options_description desc("average options");
  add_output_option(desc, "folder to write the averaged checkpoint to");
  desc.add_options()("checkpoints", po::value<std::vector<std::string>>()->multitoken(),
                     "input checkpoint folders (positional)")(
      "weights", po::value<std::string>(), "comma-separated positive weights, one per input")(
      "store", po::value<std::string>(), "SQLite store to record the lineage in")(
      "round", po::value<int>(), "round to record (default: highest round of known parents)")(
      "overwrite", po::bool_switch(), "write into a non-empty --output folder (replacing its "
      "checkpoint files)");
  po::variables_map vm;
  if (!parse_options(kUsage, desc, args, &vm, {{"checkpoints", -1}})) return 0;

  recipes::AverageOptions options;
  options.output = require_output(vm, "average");
  options.overwrite = vm["overwrite"].as<bool>();
  if (vm.count("checkpoints")) options.inputs = vm["checkpoints"].as<std::vector<std::string>>();
  if (vm.count("weights"))
    options.weights = recipes::parse_weights(vm["weights"].as<std::string>());
  const recipes::AverageResult result = recipes::average_checkpoints(options);

  std::cout << "averaged " << options.inputs.size() << " checkpoints (weights";
  for (double w : result.weights) std::cout << " " << std::setprecision(4) << w;
  std::cout << "): " << result.tensors << " tensors, " << result.parameters << " parameters -> "
            << options.output << "\n";
  if (vm.count("store")) {
    std::optional<int> round;
    if (vm.count("round")) round = vm["round"].as<int>();
    const int64_t id =
        recipes::record_average(vm["store"].as<std::string>(), options, result, round);
    std::cout << "recorded checkpoint " << id << " in " << vm["store"].as<std::string>() << "\n";
  }
  return 0;
}

}  // namespace

POSTTRAIN_COMMAND("average", "weighted mean of checkpoints of one architecture", run_average);

}  // namespace posttrain::app
