// `posttrain init`: writes a fresh random model of a named preset as a Hugging Face folder
// (config.json, weights, generation_config.json, tokenizer files). Weights are drawn tensor by
// tensor straight into the safetensors shards, so even llama-8b initialises in little memory.
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "app/command.h"
#include "app/options.h"
#include "common/error.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/model/llama_config.h"
#include "core/tokenizer/tokenizer.h"

namespace posttrain::app {
namespace {

constexpr size_t kMaxShardBytes = size_t{5} << 30;  // transformers' default shard size, 5 GiB

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") return at::kBFloat16;
  throw UsageError("--dtype must be float32 or bfloat16, got '" + name + "'");
}

int run_init(const std::vector<std::string>& args) {
  po::options_description desc("options");
  std::string presets;
  for (const auto& n : core::preset_names()) presets += (presets.empty() ? "" : ", ") + n;
  desc.add_options()("preset", po::value<std::string>()->required(),
                     ("model shape: " + presets).c_str())(
      "tokenizer", po::value<std::string>(),
      "tokenizer.json or a folder holding one (default: the built-in byte-level tokenizer)")(
      "seed", po::value<uint64_t>()->default_value(0), "random seed of the weights")(
      "dtype", po::value<std::string>(),
      "float32|bfloat16 (default: float32; bfloat16 for llama-8b)")(
      "reward-model", po::bool_switch(), "a reward model (LlamaForSequenceClassification)");
  add_output_option(desc, "checkpoint folder to write");
  po::variables_map vm;
  if (!parse_options("usage: posttrain init --preset NAME --output DIR [options]\n"
                     "Writes a freshly initialised model of a named preset as a Hugging Face "
                     "checkpoint folder, with tokenizer files.",
                     desc, args, &vm)) {
    return 0;
  }
  const std::string out = require_output(vm, "init");
  auto config = core::preset_config(vm["preset"].as<std::string>());
  const auto tok = vm.count("tokenizer")
                       ? core::Tokenizer::load_dir(vm["tokenizer"].as<std::string>())
                       : core::Tokenizer::byte_level();
  config.vocab_size = tok.vocab_size();
  config.bos_token_id = tok.bos_id();
  config.eos_token_ids = tok.eos_ids();
  config.pad_token_id = tok.pad_id();
  if (vm["reward-model"].as<bool>()) {
    config.kind = core::ModelKind::kRewardModel;
    // The reward is read at the last non-pad token, so a pad id is required; fall back to the
    // end-of-text token as Llama 3 reward models do.
    if (!config.pad_token_id && !config.eos_token_ids.empty()) {
      config.pad_token_id = config.eos_token_ids.front();
    }
    if (!config.pad_token_id) {
      throw UsageError("init --reward-model: the tokenizer has neither a pad nor an eos token");
    }
  }
  const at::ScalarType dtype = vm.count("dtype")
                                   ? parse_dtype(vm["dtype"].as<std::string>())
                                   : (config.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat);
  const uint64_t seed = vm["seed"].as<uint64_t>();
  core::init_checkpoint(config, out, seed, dtype, kMaxShardBytes);
  tok.save_dir(out);
  int64_t params = 0;
  for (const auto& [name, shape] : core::hf_layout(config)) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    params += n;
  }
  std::cout << "wrote " << out << ": preset " << vm["preset"].as<std::string>()
            << (config.kind == core::ModelKind::kRewardModel ? " reward model" : "") << ", "
            << params << " parameters, vocab " << config.vocab_size << ", "
            << (dtype == at::kFloat ? "float32" : "bfloat16") << ", seed " << seed << "\n";
  return 0;
}

}  // namespace

POSTTRAIN_COMMAND("init", "write a fresh random model of a named preset (HF folder)", run_init);

}  // namespace posttrain::app
