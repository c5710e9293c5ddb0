// posttrain reward train --config FILE [--set section.key=value ...]: reward-model training.
// posttrain reward score --model DIR --input IN --output OUT [...]: rewards of JSONL rows.
#include <ATen/Context.h>

#include <iostream>

#include "app/command.h"
#include "app/model_commands/stage_config.h"
#include "app/options.h"
#include "common/error.h"
#include "core/tokenizer/tokenizer.h"
#include "reward/config.h"
#include "reward/reward.h"
#include "reward/score.h"

namespace posttrain::app {
namespace {

const char* kRewardUsage =
    "usage: posttrain reward train --config FILE [--set section.key=value ...]\n"
    "       posttrain reward score --model DIR --input IN.jsonl --output OUT.jsonl [options]\n"
    "`posttrain reward train --help` lists every config key; `reward score --help` its options.";

int run_train(const std::vector<std::string>& args) {
  const auto schema = reward::reward_schema();
  const std::string usage_head =
      "usage: posttrain reward train --config FILE [--set section.key=value ...]\n\n"
      "Trains a reward model (LlamaForSequenceClassification, num_labels 1) with the pairwise\n"
      "Bradley-Terry loss on every ordered pair of each ranking (edited > chosen > rejected).\n"
      "Data lines: {\"prompt\", \"chosen\", \"rejected\"} (strings or message lists, optional "
      "\"edited\",\n\"strength\") or {\"prompt\", \"responses\", \"ranking\"}; or store rounds "
      "(data.store).\nOutput: OUT/checkpoint-<step>/, the final model in OUT/, "
      "OUT/metrics.jsonl (loss, accuracy,\nmargin, reward_chosen, reward_rejected; eval_* at eval "
      "steps). Running the same command again\nresumes. Data parallel: `posttrain launch --nproc N "
      "-- posttrain reward train ...`.\n\n";
  const auto resolved = load_stage_config(
      schema, usage_head, args, [](const nlohmann::json& r) { reward::reward_data_options(r); });
  if (!resolved) return 0;
  reward::run_reward(*resolved);
  return 0;
}

int run_score(const std::vector<std::string>& args) {
  po::options_description desc("options");
  desc.add_options()("model", po::value<std::string>()->required(),
                     "reward model folder (LlamaForSequenceClassification)")(
      "input", po::value<std::string>()->required(),
      "JSONL rows with input_ids, text, messages, prompt + completion (or response), or "
      "response_id (with --store)")(
      "device", po::value<std::string>()->default_value("cpu"), "cpu|cuda")(
      "dtype", po::value<std::string>()->default_value("float32"), "float32|bfloat16")(
      "batch-size", po::value<int64_t>()->default_value(8), "rows per forward pass")(
      "chat-template", po::value<std::string>(),
      "llama3|chatml for messages and prompt rows (default: from the tokenizer)")(
      "prompt-completion", po::value<std::string>()->default_value("chat"),
      "string prompt/completion rows: chat (a user and an assistant turn) or text (raw text + "
      "EOS)")(
      "store", po::value<std::string>(),
      "record each prompt/completion or response_id row's reward in this store's scores "
      "(keyed by response and reward-model path), reusing scores already there");
  add_output_option(desc, "JSONL: the input fields plus reward");
  po::variables_map vm;
  if (!parse_options("usage: posttrain reward score --model DIR --input IN.jsonl --output "
                     "OUT.jsonl [options]\nWrites each input row plus its reward (read at the "
                     "last token, as transformers' LlamaForSequenceClassification does).",
                     desc, args, &vm)) {
    return 0;
  }
  reward::ScoreOptions o;
  const std::string out = require_output(vm, "reward score");
  o.model_dir = vm["model"].as<std::string>();
  const std::string dev = vm["device"].as<std::string>(), dtype = vm["dtype"].as<std::string>();
  if (dev != "cpu" && dev != "cuda") throw UsageError("--device must be cpu or cuda");
  if (dev == "cuda" && !at::hasCUDA()) throw UsageError("--device cuda: no CUDA device");
  if (dtype != "float32" && dtype != "bfloat16") {
    throw UsageError("--dtype must be float32 or bfloat16");
  }
  o.device = at::Device(dev == "cuda" ? at::kCUDA : at::kCPU);
  o.dtype = dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
  o.batch_size = vm["batch-size"].as<int64_t>();
  if (o.batch_size <= 0) throw UsageError("--batch-size must be positive");
  if (vm.count("chat-template")) {
    o.format = core::parse_chat_format(vm["chat-template"].as<std::string>());
  }
  const std::string pc = vm["prompt-completion"].as<std::string>();
  if (pc != "chat" && pc != "text") throw UsageError("--prompt-completion must be chat or text");
  o.prompt_completion_as_text = pc == "text";
  if (vm.count("store")) o.store = vm["store"].as<std::string>();
  const auto s = reward::score_file(vm["input"].as<std::string>(), out, o);
  std::cerr << "reward score: " << s.rows << " rows (" << s.computed << " computed, " << s.reused
            << " reused from the store, " << s.stored << " stored) into " << out << "\n";
  return 0;
}

int run_reward_command(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << kRewardUsage << "\n";
    return args.empty() ? 2 : 0;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "train") return run_train(rest);
  if (args[0] == "score") return run_score(rest);
  throw UsageError("unknown reward command '" + args[0] + "' (train, score)");
}

}  // namespace

POSTTRAIN_COMMAND("reward", "reward model: train (Bradley-Terry on rankings) and score",
                  run_reward_command);

}  // namespace posttrain::app
