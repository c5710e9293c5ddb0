// posttrain dpo train --config FILE [--set section.key=value ...]: DPO from a JSON config.
// posttrain dpo eval --model POLICY --reference REF --input IN --output OUT [...]: per-pair
// log-probs, rewards and loss, and a summary line on standard output.
#include <iostream>

#include "app/command.h"
#include "app/model_commands/stage_config.h"
#include "app/options.h"
#include "dpo/dpo.h"
#include "dpo/dpo_eval.h"
#include "dpo/options.h"

namespace posttrain::app {
namespace {

int run_train(const std::vector<std::string>& args) {
  const auto schema = dpo::dpo_schema();
  const std::string usage_head =
      "usage: posttrain dpo train --config FILE [--set section.key=value ...]\n\n"
      "Direct preference optimisation (Llama 3 section 4.1.4). Pairs: JSONL in TRL's forms\n"
      "({\"prompt\", \"chosen\", \"rejected\"} strings or messages, implicit-prompt conversations,\n"
      "prompt_input_ids/chosen_input_ids/rejected_input_ids) and/or a store's latest round.\n"
      "Reference log-probs are computed once before training and cached (the store's\n"
      "ref_logprobs table, else OUT/ref_logprobs.jsonl). Output: OUT/checkpoint-<step>/, the final\n"
      "model in OUT/, OUT/metrics.jsonl (TRL's metric names). Running the same command again\n"
      "resumes. Data parallel: `posttrain launch --nproc N -- posttrain dpo train ...`.\n\n"
      "";
  const auto resolved = load_stage_config(
      schema, usage_head, args, [](const nlohmann::json& r) { dpo::dpo_options(r); });
  if (!resolved) return 0;
  dpo::run_dpo(*resolved);
  return 0;
}

int run_eval(const std::vector<std::string>& args) {
  po::options_description desc("options");
  desc.add_options()("model", po::value<std::string>()->required(), "policy checkpoint folder")(
      "reference", po::value<std::string>()->required(), "reference checkpoint folder")(
      "input", po::value<std::string>()->required(), "JSONL pairs (the forms dpo train reads)")(
      "beta", po::value<double>()->default_value(0.1), "beta of the rewards and loss")(
      "loss-type", po::value<std::string>()->default_value("sigmoid"), "sigmoid|ipo|hinge")(
      "label-smoothing", po::value<double>()->default_value(0.0), "sigmoid's label smoothing")(
      "device", po::value<std::string>()->default_value("cpu"), "cpu|cuda")(
      "dtype", po::value<std::string>()->default_value("float32"), "float32|bfloat16")(
      "batch-size", po::value<int64_t>()->default_value(8), "pairs per forward pass")(
      "mask-format-tokens", po::value<bool>()->default_value(true),
      "leave the template's header and end-of-turn tokens out of the sums (true|false)")(
      "chat-template", po::value<std::string>()->default_value("auto"), "auto|llama3|chatml")(
      "prompt-completion", po::value<std::string>()->default_value("chat"),
      "string rows: chat (user + assistant turns) or text (raw text + EOS)");
  add_output_option(desc, "JSONL: per pair the input fields plus chosen_logps, rejected_logps, "
                          "ref_chosen_logps, ref_rejected_logps, chosen_reward, rejected_reward, "
                          "loss");
  po::variables_map vm;
  if (!parse_options("usage: posttrain dpo eval --model POLICY --reference REF --input IN.jsonl "
                     "--output OUT.jsonl [options]\nThe last line of standard output sums up: "
                     "pairs, mean loss, accuracy, mean margin.",
                     desc, args, &vm)) {
    return 0;
  }
  dpo::DpoEvalOptions o;
  o.output = require_output(vm, "dpo eval");
  o.policy = vm["model"].as<std::string>();
  o.reference = vm["reference"].as<std::string>();
  o.input = vm["input"].as<std::string>();
  o.loss.beta = vm["beta"].as<double>();
  if (!(o.loss.beta > 0)) throw UsageError("--beta must be > 0");
  o.loss.type = dpo::parse_loss_type(vm["loss-type"].as<std::string>());
  o.loss.label_smoothing = vm["label-smoothing"].as<double>();
  if (o.loss.label_smoothing < 0 || o.loss.label_smoothing >= 0.5) {
    throw UsageError("--label-smoothing must be in [0, 0.5)");
  }
  o.device = vm["device"].as<std::string>();
  o.dtype = vm["dtype"].as<std::string>();
  o.batch_size = vm["batch-size"].as<int64_t>();
  o.mask_format_tokens = vm["mask-format-tokens"].as<bool>();
  o.chat_format = vm["chat-template"].as<std::string>();
  const std::string pc = vm["prompt-completion"].as<std::string>();
  if (pc != "chat" && pc != "text") throw UsageError("--prompt-completion must be chat or text");
  o.strings_as_text = pc == "text";
  const auto summary = dpo::run_dpo_eval(o);
  std::cout << summary.to_json().dump() << std::endl;
  return 0;
}

int run_dpo_command(const std::vector<std::string>& args) {
  const char* usage =
      "usage: posttrain dpo train|eval ...\n"
      "  train --config FILE [--set section.key=value ...]   DPO training (see dpo train --help)\n"
      "  eval --model POLICY --reference REF --input IN --output OUT   per-pair DPO scores";
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << usage << "\n";
    return args.empty() ? 2 : 0;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "train") return run_train(rest);
  if (args[0] == "eval") return run_eval(rest);
  throw UsageError("unknown dpo command '" + args[0] + "' (train, eval)");
}

}  // namespace

POSTTRAIN_COMMAND("dpo", "direct preference optimisation: train, eval", run_dpo_command);

}  // namespace posttrain::app
