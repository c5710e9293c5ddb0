// Shape and behaviour of a Llama-family model, read from / written to a Hugging Face
// config.json. Accepts both spellings of RoPE settings (transformers 4: rope_theta +
// rope_scaling; transformers 5: rope_parameters) and both torch_dtype and dtype.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace posttrain::core {

// RoPE frequency scaling. "default" = plain RoPE; "llama3" = Llama 3.1 wavelength-dependent
// scaling (factor, low/high_freq_factor, original_max_position_embeddings).
struct RopeScaling {
  std::string rope_type = "default";
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

enum class ModelKind {
  kCausalLM,        // LlamaForCausalLM: lm_head (or tied embeddings) gives next-token logits
  kRewardModel,     // LlamaForSequenceClassification with num_labels = 1: score head
};

struct LlamaConfig {
  ModelKind kind = ModelKind::kCausalLM;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;   // < num_attention_heads means grouped-query attention
  int64_t head_dim = 0;              // 0 in the file means hidden_size / num_attention_heads
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;       // refused when true (not a Llama layout we support)
  bool mlp_bias = false;             // refused when true
  std::string dtype = "float32";     // storage dtype named in the file: float32|bfloat16|float16
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  // config.json may hold one id or a list
  std::optional<int64_t> pad_token_id; // required for reward models
  double initializer_range = 0.02;

  // Parses a config.json object; `source` (a path) names where errors come from.
  // Throws InputError naming the field on a missing/mistyped key or an unsupported setting.
  static LlamaConfig from_json(const nlohmann::json& j, const std::string& source);
  static LlamaConfig load(const std::string& config_json_path);
  // The transformers-4 spelling (rope_theta + rope_scaling, torch_dtype) plus "dtype", with
  // "architectures" and "model_type": "llama", loadable by transformers 4 and 5.
  nlohmann::json to_json() const;

  int64_t resolved_head_dim() const {
    return head_dim > 0 ? head_dim : hidden_size / num_attention_heads;
  }
};

// Named presets of fresh random models: "tiny" (tests), "smol-135m" (SmolLM2-135M shapes),
// "llama-1b" (Llama-3.2-1B shapes), "llama-8b" (Llama-3.1-8B shapes). vocab_size is set by the
// preset; `posttrain init` replaces it with the tokenizer's size when one is given.
LlamaConfig preset_config(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace posttrain::core
