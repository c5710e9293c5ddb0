// Reading and writing Hugging Face config.json for Llama-family models, plus the named presets.
// Both RoPE spellings are accepted: transformers 4 (top-level rope_theta + rope_scaling, whose
// type key is "rope_type" or the older "type") and transformers 5 (rope_parameters holding
// rope_theta and the scaling fields). We write the transformers-4 spelling plus "dtype", which
// both versions load.
#include "core/model/llama_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"
#include "common/json_depth.h"

namespace posttrain::core {
namespace {

using nlohmann::json;

struct Reader {
  const json& j;
  std::string source;
  std::string prefix;  // "rope_scaling." for nested objects

  InputError error(const std::string& key, const std::string& what) const {
    return InputError(Location{source, 0, prefix + key}, what);
  }
  bool has(const std::string& key) const { return j.contains(key) && !j.at(key).is_null(); }
  int64_t get_int(const std::string& key) const {
    const auto& v = j.at(key);
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float() &&
        v.get<double>() == static_cast<double>(static_cast<int64_t>(v.get<double>()))) {
      return static_cast<int64_t>(v.get<double>());
    }
    throw error(key, "expected an integer, got " + v.dump());
  }
  int64_t req_int(const std::string& key) const {
    if (!has(key)) throw error(key, "missing required field");
    return get_int(key);
  }
  int64_t opt_int(const std::string& key, int64_t fallback) const {
    return has(key) ? get_int(key) : fallback;
  }
  double opt_num(const std::string& key, double fallback) const {
    if (!has(key)) return fallback;
    const auto& v = j.at(key);
    if (!v.is_number()) throw error(key, "expected a number, got " + v.dump());
    return v.get<double>();
  }
  bool opt_bool(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    const auto& v = j.at(key);
    if (!v.is_boolean()) throw error(key, "expected true or false, got " + v.dump());
    return v.get<bool>();
  }
  std::string opt_str(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const auto& v = j.at(key);
    if (!v.is_string()) throw error(key, "expected a string, got " + v.dump());
    return v.get<std::string>();
  }
};

// Reads rope type and scaling fields from `r` (either rope_scaling or rope_parameters).
RopeScaling read_rope(const Reader& r) {
  RopeScaling s;
  std::string type = r.opt_str("rope_type", r.opt_str("type", "default"));
  if (type != "default" && type != "llama3") {
    throw r.error("rope_type", "unsupported RoPE type '" + type + "' (supported: default, llama3)");
  }
  s.rope_type = type;
  if (type == "llama3") {
    s.factor = r.opt_num("factor", 8.0);
    s.low_freq_factor = r.opt_num("low_freq_factor", 1.0);
    s.high_freq_factor = r.opt_num("high_freq_factor", 4.0);
    s.original_max_position_embeddings = r.opt_int("original_max_position_embeddings", 8192);
    if (s.factor <= 0 || s.low_freq_factor <= 0 || s.high_freq_factor <= s.low_freq_factor ||
        s.original_max_position_embeddings <= 0) {
      throw r.error("factor",
                    "llama3 RoPE scaling needs factor > 0, 0 < low_freq_factor < "
                    "high_freq_factor and original_max_position_embeddings > 0");
    }
  }
  return s;
}

std::string normalise_dtype(const Reader& r, const std::string& key) {
  std::string d = r.opt_str(key, "float32");
  if (d == "float" || d == "torch.float32") d = "float32";
  if (d == "bf16" || d == "torch.bfloat16") d = "bfloat16";
  if (d == "half" || d == "torch.float16") d = "float16";
  if (d != "float32" && d != "bfloat16" && d != "float16") {
    throw r.error(key, "unsupported dtype '" + d + "' (float32, bfloat16, float16)");
  }
  return d;
}

}  // namespace

LlamaConfig LlamaConfig::from_json(const json& j, const std::string& source) {
  if (!j.is_object()) throw InputError(Location{source, 0, ""}, "config must be a JSON object");
  Reader r{j, source, ""};
  LlamaConfig c;
  const std::string model_type = r.opt_str("model_type", "llama");
  if (model_type != "llama") {
    throw r.error("model_type", "unsupported model_type '" + model_type + "' (only llama)");
  }
  if (r.has("architectures")) {
    const auto& a = j.at("architectures");
    if (!a.is_array() || a.empty() || !a[0].is_string()) {
      throw r.error("architectures", "expected a list of class names");
    }
    const std::string arch = a[0].get<std::string>();
    if (arch == "LlamaForSequenceClassification") {
      c.kind = ModelKind::kRewardModel;
    } else if (arch != "LlamaForCausalLM" && arch != "LlamaModel") {
      throw r.error("architectures", "unsupported architecture '" + arch +
                                         "' (LlamaForCausalLM, LlamaForSequenceClassification)");
    }
  }
  c.vocab_size = r.req_int("vocab_size");
  c.hidden_size = r.req_int("hidden_size");
  c.intermediate_size = r.req_int("intermediate_size");
  c.num_hidden_layers = r.req_int("num_hidden_layers");
  c.num_attention_heads = r.req_int("num_attention_heads");
  c.num_key_value_heads = r.opt_int("num_key_value_heads", c.num_attention_heads);
  c.head_dim = r.opt_int("head_dim", 0);
  c.max_position_embeddings = r.opt_int("max_position_embeddings", 2048);
  c.rms_norm_eps = r.opt_num("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = r.opt_bool("tie_word_embeddings", false);
  c.attention_bias = r.opt_bool("attention_bias", false);
  c.mlp_bias = r.opt_bool("mlp_bias", false);
  c.initializer_range = r.opt_num("initializer_range", 0.02);
  const std::string act = r.opt_str("hidden_act", "silu");
  if (act != "silu") throw r.error("hidden_act", "unsupported activation '" + act + "' (silu)");
  if (c.attention_bias) throw r.error("attention_bias", "attention biases are not supported");
  if (c.mlp_bias) throw r.error("mlp_bias", "MLP biases are not supported");

  // RoPE: transformers 5 nests theta and scaling in rope_parameters; 4 has them top-level.
  if (r.has("rope_parameters")) {
    const auto& p = j.at("rope_parameters");
    if (!p.is_object()) throw r.error("rope_parameters", "expected an object");
    Reader pr{p, source, "rope_parameters."};
    c.rope_theta = pr.opt_num("rope_theta", r.opt_num("rope_theta", 10000.0));
    c.rope_scaling = read_rope(pr);
  } else {
    c.rope_theta = r.opt_num("rope_theta", 10000.0);
    if (r.has("rope_scaling")) {
      const auto& s = j.at("rope_scaling");
      if (!s.is_object()) throw r.error("rope_scaling", "expected an object or null");
      c.rope_scaling = read_rope(Reader{s, source, "rope_scaling."});
    }
  }
  // transformers 5 writes "dtype", 4 writes "torch_dtype"; prefer the newer spelling.
  c.dtype = r.has("dtype") ? normalise_dtype(r, "dtype") : normalise_dtype(r, "torch_dtype");

  if (r.has("bos_token_id")) c.bos_token_id = r.get_int("bos_token_id");
  if (r.has("eos_token_id")) {
    const auto& e = j.at("eos_token_id");
    if (e.is_array()) {
      for (size_t i = 0; i < e.size(); ++i) {
        if (!e[i].is_number_integer()) {
          throw r.error("eos_token_id[" + std::to_string(i) + "]", "expected an integer");
        }
        c.eos_token_ids.push_back(e[i].get<int64_t>());
      }
    } else {
      c.eos_token_ids.push_back(r.get_int("eos_token_id"));
    }
  }
  if (r.has("pad_token_id")) c.pad_token_id = r.get_int("pad_token_id");
  if (c.kind == ModelKind::kRewardModel) {
    if (r.opt_int("num_labels", 1) != 1 && !r.has("id2label")) {
      throw r.error("num_labels", "a reward model must have exactly one label");
    }
    if (r.has("id2label") && (!j.at("id2label").is_object() || j.at("id2label").size() != 1)) {
      throw r.error("id2label", "a reward model must have exactly one label");
    }
    if (!c.pad_token_id) {
      throw r.error("pad_token_id",
                    "required for a reward model (the reward is read at the "
                    "last non-pad token)");
    }
  }

  // Shape sanity: everything positive, heads divide evenly.
  for (auto [key, v] : {std::pair<const char*, int64_t>{"vocab_size", c.vocab_size},
                        {"hidden_size", c.hidden_size},
                        {"intermediate_size", c.intermediate_size},
                        {"num_hidden_layers", c.num_hidden_layers},
                        {"num_attention_heads", c.num_attention_heads},
                        {"num_key_value_heads", c.num_key_value_heads},
                        {"max_position_embeddings", c.max_position_embeddings}}) {
    if (v <= 0) throw r.error(key, "must be positive, got " + std::to_string(v));
  }
  if (c.head_dim < 0) throw r.error("head_dim", "must be positive");
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    throw r.error("num_key_value_heads", "must divide num_attention_heads");
  }
  if (c.head_dim == 0 && c.hidden_size % c.num_attention_heads != 0) {
    throw r.error("hidden_size", "must be a multiple of num_attention_heads");
  }
  if (c.resolved_head_dim() % 2 != 0) throw r.error("head_dim", "must be even for RoPE");
  if (!(c.rms_norm_eps > 0)) throw r.error("rms_norm_eps", "must be positive");
  if (!(c.rope_theta > 0)) throw r.error("rope_theta", "must be positive");
  const auto check_id = [&](const char* key, int64_t id) {
    if (id < 0 || id >= c.vocab_size) {
      throw r.error(key, "token id " + std::to_string(id) + " outside the vocabulary");
    }
  };
  if (c.bos_token_id) check_id("bos_token_id", *c.bos_token_id);
  for (int64_t id : c.eos_token_ids) check_id("eos_token_id", id);
  if (c.pad_token_id) check_id("pad_token_id", *c.pad_token_id);
  return c;
}

LlamaConfig LlamaConfig::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  check_json_depth(text, Location{path, 0, ""});
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw InputError(Location{path, 0, ""}, "config.json is not valid JSON");
  return from_json(j, path);
}

json LlamaConfig::to_json() const {
  json j;
  const bool reward = kind == ModelKind::kRewardModel;
  j["architectures"] = {reward ? "LlamaForSequenceClassification" : "LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = resolved_head_dim();
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["hidden_act"] = "silu";
  j["rope_theta"] = rope_theta;
  if (rope_scaling.rope_type == "default") {
    j["rope_scaling"] = nullptr;
  } else {
    j["rope_scaling"] = {
        {"rope_type", rope_scaling.rope_type},
        {"factor", rope_scaling.factor},
        {"low_freq_factor", rope_scaling.low_freq_factor},
        {"high_freq_factor", rope_scaling.high_freq_factor},
        {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings}};
  }
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["mlp_bias"] = false;
  j["initializer_range"] = initializer_range;
  j["torch_dtype"] = dtype;
  j["dtype"] = dtype;
  j["use_cache"] = true;
  j["bos_token_id"] = bos_token_id ? json(*bos_token_id) : json(nullptr);
  if (eos_token_ids.empty()) {
    j["eos_token_id"] = nullptr;
  } else if (eos_token_ids.size() == 1) {
    j["eos_token_id"] = eos_token_ids[0];
  } else {
    j["eos_token_id"] = eos_token_ids;
  }
  j["pad_token_id"] = pad_token_id ? json(*pad_token_id) : json(nullptr);
  if (reward) {
    j["num_labels"] = 1;
    j["id2label"] = {{"0", "LABEL_0"}};
    j["label2id"] = {{"LABEL_0", 0}};
  }
  return j;
}

std::vector<std::string> preset_names() { return {"tiny", "smol-135m", "llama-1b", "llama-8b"}; }

LlamaConfig preset_config(const std::string& name) {
  LlamaConfig c;
  c.rms_norm_eps = 1e-5;
  if (name == "tiny") {
    // Small enough to train on CPU in minutes; vocab normally comes from the tokenizer.
    c.vocab_size = 512, c.hidden_size = 128, c.intermediate_size = 384;
    c.num_hidden_layers = 4, c.num_attention_heads = 4, c.num_key_value_heads = 2;
    c.head_dim = 32, c.max_position_embeddings = 2048, c.rope_theta = 10000.0;
    c.tie_word_embeddings = true;
  } else if (name == "smol-135m") {
    // SmolLM2-135M.
    c.vocab_size = 49152, c.hidden_size = 576, c.intermediate_size = 1536;
    c.num_hidden_layers = 30, c.num_attention_heads = 9, c.num_key_value_heads = 3;
    c.head_dim = 64, c.max_position_embeddings = 8192, c.rope_theta = 100000.0;
    c.tie_word_embeddings = true, c.initializer_range = 0.041666666666666664;
  } else if (name == "llama-1b" || name == "llama-8b") {
    // Llama-3.2-1B / Llama-3.1-8B, both with llama3 RoPE scaling.
    const bool big = name == "llama-8b";
    c.vocab_size = 128256;
    c.hidden_size = big ? 4096 : 2048;
    c.intermediate_size = big ? 14336 : 8192;
    c.num_hidden_layers = big ? 32 : 16;
    c.num_attention_heads = 32, c.num_key_value_heads = 8;
    c.head_dim = big ? 128 : 64;
    c.max_position_embeddings = 131072, c.rope_theta = 500000.0;
    c.rope_scaling = RopeScaling{"llama3", big ? 8.0 : 32.0, 1.0, 4.0, 8192};
    c.tie_word_embeddings = !big;
    if (big) c.dtype = "bfloat16";
  } else {
    std::string names;
    for (const auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
    throw UsageError("unknown preset '" + name + "' (known: " + names + ")");
  }
  return c;
}

}  // namespace posttrain::core
