// posttrain sft --config FILE [--set section.key=value ...]: supervised fine-tuning. The config
// is validated in full before anything loads; --help lists every key with its default.
#include <iostream>

#include "app/command.h"
#include "app/model_commands/stage_config.h"
#include "app/options.h"
#include "sft/sft.h"

namespace posttrain::app {
namespace {

int run_sft_command(const std::vector<std::string>& args) {
  const auto schema = sft::sft_schema();
  const std::string usage_head =
      "usage: posttrain sft --config FILE [--set section.key=value ...]\n\n"
      "Supervised fine-tuning. Data lines: {\"messages\": [{\"role\", \"content\", \"weight\"?: "
      "0|1}]}\nor {\"prompt\", \"completion\"}. Loss on weighted assistant turns plus their end "
      "token.\nOutput: OUT/checkpoint-<step>/, the final model in OUT/, OUT/metrics.jsonl. "
      "Running the\nsame command again resumes from the newest checkpoint. Data parallel: start "
      "it with\n`posttrain launch --nproc N -- posttrain sft ...` or torchrun-style environment "
      "variables.\n\n";
  const auto resolved = load_stage_config(
      schema, usage_head, args, [](const nlohmann::json& r) { sft::sft_data_options(r); });
  if (!resolved) return 0;
  sft::run_sft(*resolved);
  return 0;
}

}  // namespace

POSTTRAIN_COMMAND("sft", "supervised fine-tuning from a JSON or YAML config", run_sft_command);

}  // namespace posttrain::app
