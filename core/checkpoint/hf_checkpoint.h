// Hugging Face checkpoint folders: config.json, model.safetensors (or model-0000i-of-0000n
// shards with model.safetensors.index.json), generation_config.json. Tokenizer files are written
// by the caller (Tokenizer::save_dir). Tensor names are transformers' state-dict names, so a
// folder we save loads in transformers (LlamaForCausalLM / LlamaForSequenceClassification) and a
// folder transformers saves loads here.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/model/llama.h"
#include "core/model/llama_config.h"

namespace posttrain::core {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;
using TensorLayout = std::vector<std::pair<std::string, std::vector<int64_t>>>;

// The tensors a checkpoint of `config` holds, in save order, with their shapes (no lm_head when
// tied; score.weight for a reward model).
TensorLayout hf_layout(const LlamaConfig& config);

// The model's parameters under their HF names, in hf_layout order (detached, sharing storage).
NamedTensors state_dict(LlamaModelImpl& model);

// config.json of `dir` (InputError naming the file and field when malformed).
LlamaConfig load_config(const std::string& dir);

// Builds the model of DIR/config.json with parameters of `dtype` on `device` and loads its
// weights. Throws IoError / InputError naming the file and tensor for missing, unexpected or
// mis-shaped tensors, and for a tensor holding NaN or Inf unless `allow_non_finite` (one
// isfinite pass per tensor on load: such weights would give null log-probs and losses later).
LlamaModel load_model(const std::string& dir, at::Device device = at::kCPU,
                      at::ScalarType dtype = at::kFloat, bool allow_non_finite = false);
// Loads DIR's weights into an existing model of the same config (strict: every tensor of
// hf_layout present with its shape, nothing else except a tied model's redundant lm_head.weight
// and rotary inv_freq buffers, which are ignored; finite unless `allow_non_finite`).
void load_weights(LlamaModelImpl& model, const std::string& dir, bool allow_non_finite = false);

// Name -> file path of every tensor in DIR (single file or shards via the index).
std::map<std::string, std::string> checkpoint_tensor_files(const std::string& dir);

// Writes config.json (dtype = save_dtype), the weights (one model.safetensors when
// max_shard_bytes == 0 or the weights fit, else shards of at most max_shard_bytes each plus
// model.safetensors.index.json) and generation_config.json. Creates `dir`; removes weight files
// of an earlier save there first.
void save_model(LlamaModelImpl& model, const std::string& dir, at::ScalarType save_dtype,
                size_t max_shard_bytes = 0);

// The weight-writing part of save_model for any named tensors: `prefix`.safetensors or
// `prefix`-0000i-of-0000n.safetensors + `prefix`.safetensors.index.json.
void save_sharded(const NamedTensors& tensors, const std::string& dir, at::ScalarType dtype,
                  size_t max_shard_bytes, const std::string& prefix = "model");

// generation_config.json from the config's bos/eos/pad ids.
void write_generation_config(const LlamaConfig& config, const std::string& dir);

// Writes a freshly initialised checkpoint (N(0, initializer_range) matrices, unit norms) without
// ever building the model: tensors are drawn one at a time and streamed into shards, so memory
// stays at about one tensor (used for llama-8b). Deterministic for a given seed.
void init_checkpoint(const LlamaConfig& config, const std::string& dir, uint64_t seed,
                     at::ScalarType dtype, size_t max_shard_bytes = 0);

}  // namespace posttrain::core
