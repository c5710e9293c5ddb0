// posttrain sample --config FILE [--set section.key=value ...]: rejection sampling (Llama 3
// section 4.2.2): K samples per prompt from the policy, scored by verifiers and/or a reward
// model, the best selected as the round's SFT data, best vs worst stored as a preference pair.
#include <iostream>
#include <sstream>

#include "app/command.h"
#include "app/model_commands/stage_config.h"
#include "rejection_sampling/config.h"
#include "rejection_sampling/rejection_sampling.h"

namespace posttrain::app {
namespace {

int run_sample_command(const std::vector<std::string>& args) {
  const auto schema = rejection_sampling::sample_schema();
  const std::string usage_head =
      "usage: posttrain sample --config FILE [--set section.key=value ...]\n\n"
      "Rejection sampling: K candidates per prompt (prompts.path JSONL or a store round's\n"
      "synthetic problems) from the policy through the batched decode engine; each scored by\n"
      "its kind's verifier (math, code, tool) and/or reward_model.path, ranked by\n"
      "ranking.order. The best becomes a selection of output.round (what `sft` with\n"
      "data.store_round trains on), best vs worst a preference pair (source\n"
      "rejection_sampling). Every candidate, score, seed, sampling setting and the policy\n"
      "checkpoint go to output.store, one transaction per prompt; running the same command\n"
      "again skips the prompts already done. Output: OUT/candidates.jsonl, OUT/summary.json,\n"
      "one summary line on standard error.\n\n";
  const auto resolved = load_stage_config(schema, usage_head, args, [](const nlohmann::json& r) {
    rejection_sampling::sample_options(r);
  });
  if (!resolved) return 0;
  const auto o = rejection_sampling::sample_options(*resolved);
  const auto s = rejection_sampling::run_sample(o);
  const auto j = s.to_json();
  std::ostringstream line;
  line.precision(3);
  line << "sample: " << s.prompts << " prompts (" << s.skipped << " already done, " << s.duplicates
       << " duplicates), " << s.samples << " samples in " << s.seconds << " s ("
       << (s.seconds > 0 ? s.samples / s.seconds : 0.0) << " samples/s), verified "
       << j["verified_fraction"].dump() << ", best verified " << j["best_verified_fraction"].dump()
       << ", " << s.selected << " selected, " << s.pairs << " pairs into " << o.store << " round "
       << o.round << "\n";
  std::cerr << line.str();
  return 0;
}

}  // namespace

POSTTRAIN_COMMAND("sample",
                  "rejection sampling: K samples per prompt, verified/rewarded, best selected",
                  run_sample_command);

}  // namespace posttrain::app
