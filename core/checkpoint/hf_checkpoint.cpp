// HF checkpoint folders (see hf_checkpoint.h).
#include "core/checkpoint/hf_checkpoint.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/error.h"
#include "common/json_depth.h"
#include "core/checkpoint/safetensors.h"

namespace posttrain::core {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kIndexSuffix = ".safetensors.index.json";

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  check_json_depth(text, Location{path, 0, ""});
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) throw InputError(Location{path, 0, ""}, "not valid JSON");
  return j;
}

void write_text_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << text;
    if (!out.flush()) throw IoError("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw IoError("cannot write " + path);
}

uint64_t tensor_bytes(const std::vector<int64_t>& shape, at::ScalarType dtype) {
  uint64_t n = c10::elementSize(dtype);
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

// Splits `layout` into consecutive groups of at most max_bytes each (a tensor larger than the
// limit gets a shard of its own). max_bytes == 0: one group.
std::vector<TensorLayout> plan_shards(const TensorLayout& layout, at::ScalarType dtype,
                                      size_t max_bytes) {
  std::vector<TensorLayout> shards(1);
  uint64_t used = 0;
  for (const auto& item : layout) {
    const uint64_t b = tensor_bytes(item.second, dtype);
    if (max_bytes > 0 && used > 0 && used + b > max_bytes) {
      shards.emplace_back();
      used = 0;
    }
    shards.back().push_back(item);
    used += b;
  }
  return shards;
}

std::string shard_name(const std::string& prefix, size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu.safetensors", i + 1, n);
  return prefix + buf;
}

// Removes weight files an earlier save left in `dir` so loaders never see two versions.
void remove_old_weights(const std::string& dir, const std::string& prefix) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const bool single = name == prefix + ".safetensors";
    const bool index = name == prefix + kIndexSuffix;
    const bool shard = name.rfind(prefix + "-", 0) == 0 && name.find("-of-") != std::string::npos &&
                       name.size() > 12 && name.substr(name.size() - 12) == ".safetensors";
    if (single || index || shard) fs::remove(e.path(), ec);
  }
}

// Streams tensors produced by `make(name, shape)` into shards; returns nothing, writes index.
template <typename MakeTensor>
void write_shards(const TensorLayout& layout, const std::string& dir, at::ScalarType dtype,
                  size_t max_shard_bytes, const std::string& prefix, MakeTensor make) {
  fs::create_directories(dir);
  remove_old_weights(dir, prefix);
  const auto shards = plan_shards(layout, dtype, max_shard_bytes);
  json weight_map = json::object();
  uint64_t total = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file =
        shards.size() == 1 ? prefix + ".safetensors" : shard_name(prefix, i, shards.size());
    SafetensorsWriter writer(dir + "/" + file, shards[i], dtype);
    for (const auto& [name, shape] : shards[i]) {
      writer.write(name, make(name, shape));
      weight_map[name] = file;
    }
    writer.finish();
    total += writer.data_bytes();
  }
  if (shards.size() > 1) {
    json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_text_file(dir + "/" + prefix + kIndexSuffix, index.dump(2) + "\n");
  }
}

std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "float32";
    case at::kBFloat16:
      return "bfloat16";
    case at::kHalf:
      return "float16";
    default:
      throw UsageError(std::string("cannot save weights as ") + c10::toString(t));
  }
}

void write_config(LlamaConfig config, const std::string& dir, at::ScalarType dtype) {
  config.dtype = dtype_name(dtype);
  write_text_file(dir + "/config.json", config.to_json().dump(2) + "\n");
}

bool ignorable(const std::string& name, const LlamaConfig& c) {
  if (name.size() >= 19 && name.substr(name.size() - 19) == "rotary_emb.inv_freq") return true;
  return name == "lm_head.weight" && c.tie_word_embeddings && c.kind == ModelKind::kCausalLM;
}

}  // namespace

TensorLayout hf_layout(const LlamaConfig& c) {
  const int64_t h = c.hidden_size, hd = c.resolved_head_dim(), m = c.intermediate_size;
  TensorLayout out;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, h}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out.push_back({p + "self_attn.q_proj.weight", {c.num_attention_heads * hd, h}});
    out.push_back({p + "self_attn.k_proj.weight", {c.num_key_value_heads * hd, h}});
    out.push_back({p + "self_attn.v_proj.weight", {c.num_key_value_heads * hd, h}});
    out.push_back({p + "self_attn.o_proj.weight", {h, c.num_attention_heads * hd}});
    out.push_back({p + "mlp.gate_proj.weight", {m, h}});
    out.push_back({p + "mlp.up_proj.weight", {m, h}});
    out.push_back({p + "mlp.down_proj.weight", {h, m}});
    out.push_back({p + "input_layernorm.weight", {h}});
    out.push_back({p + "post_attention_layernorm.weight", {h}});
  }
  out.push_back({"model.norm.weight", {h}});
  if (c.kind == ModelKind::kRewardModel) {
    out.push_back({"score.weight", {1, h}});
  } else if (!c.tie_word_embeddings) {
    out.push_back({"lm_head.weight", {c.vocab_size, h}});
  }
  return out;
}

NamedTensors state_dict(LlamaModelImpl& model) {
  const auto params = model.named_parameters(/*recurse=*/true);
  NamedTensors out;
  for (const auto& [name, shape] : hf_layout(model.config())) {
    const at::Tensor* t = params.find(name);
    if (!t) throw UsageError("model has no parameter " + name);
    out.emplace_back(name, t->detach());
  }
  return out;
}

LlamaConfig load_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  if (!fs::exists(path)) throw IoError("no config.json in " + dir);
  return LlamaConfig::load(path);
}

std::map<std::string, std::string> checkpoint_tensor_files(const std::string& dir) {
  std::map<std::string, std::string> out;
  const std::string single = dir + "/model.safetensors";
  const std::string index = dir + "/model" + kIndexSuffix;
  if (fs::exists(index)) {
    const json j = read_json_file(index);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
      throw InputError(Location{index, 0, "weight_map"}, "missing or not an object");
    }
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) {
        throw InputError(Location{index, 0, "weight_map." + it.key()}, "expected a file name");
      }
      const std::string file = it.value().get<std::string>();
      if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
        throw InputError(Location{index, 0, "weight_map." + it.key()},
                         "file name '" + file + "' must be a plain name inside the folder");
      }
      out[it.key()] = dir + "/" + file;
    }
    return out;
  }
  if (!fs::exists(single)) {
    throw IoError("no model.safetensors or model" + std::string(kIndexSuffix) + " in " + dir);
  }
  SafetensorsFile f(single);
  for (const auto& name : f.names()) out[name] = single;
  return out;
}

void load_weights(LlamaModelImpl& model, const std::string& dir) {
  const auto& config = model.config();
  const auto files = checkpoint_tensor_files(dir);
  std::map<std::string, std::shared_ptr<SafetensorsFile>> open;
  auto file_of = [&](const std::string& path) {
    auto& f = open[path];
    if (!f) f = std::make_shared<SafetensorsFile>(path);
    return f;
  };
  std::set<std::string> expected;
  const auto params = model.named_parameters(true);
  at::NoGradGuard no_grad;
  for (const auto& [name, shape] : hf_layout(config)) {
    expected.insert(name);
    auto it = files.find(name);
    if (it == files.end()) {
      throw InputError(Location{dir, 0, name}, "checkpoint is missing tensor '" + name + "'");
    }
    auto f = file_of(it->second);
    if (!f->contains(name)) {
      throw InputError(Location{it->second, 0, name},
                       "tensor '" + name + "' listed in the index is not in this file");
    }
    const auto& e = f->entry(name);
    if (e.shape != shape) {
      throw InputError(Location{it->second, 0, name},
                       "tensor '" + name + "' has shape " + c10::str(at::IntArrayRef(e.shape)) +
                           ", config.json implies " + c10::str(at::IntArrayRef(shape)));
    }
    const at::Tensor* p = params.find(name);
    if (!p) throw UsageError("model has no parameter " + name);
    at::Tensor dst = *p;
    dst.copy_(f->view(name));
  }
  for (const auto& [name, path] : files) {
    if (!expected.count(name) && !ignorable(name, config)) {
      throw InputError(Location{path, 0, name},
                       "unexpected tensor '" + name + "' (not part of this model's config)");
    }
  }
}

LlamaModel load_model(const std::string& dir, at::Device device, at::ScalarType dtype) {
  const auto config = load_config(dir);
  LlamaModel model(config, at::TensorOptions().dtype(dtype).device(device), false);
  load_weights(*model, dir);
  return model;
}

void save_sharded(const NamedTensors& tensors, const std::string& dir, at::ScalarType dtype,
                  size_t max_shard_bytes, const std::string& prefix) {
  TensorLayout layout;
  std::map<std::string, at::Tensor> by_name;
  for (const auto& [name, t] : tensors) {
    layout.emplace_back(name, t.sizes().vec());
    by_name[name] = t;
  }
  write_shards(layout, dir, dtype, max_shard_bytes, prefix,
               [&](const std::string& name, const std::vector<int64_t>&) { return by_name[name]; });
}

void write_generation_config(const LlamaConfig& c, const std::string& dir) {
  json j = json::object();
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  if (c.pad_token_id) j["pad_token_id"] = *c.pad_token_id;
  write_text_file(dir + "/generation_config.json", j.dump(2) + "\n");
}

void save_model(LlamaModelImpl& model, const std::string& dir, at::ScalarType save_dtype,
                size_t max_shard_bytes) {
  fs::create_directories(dir);
  save_sharded(state_dict(model), dir, save_dtype, max_shard_bytes, "model");
  write_config(model.config(), dir, save_dtype);
  write_generation_config(model.config(), dir);
}

void init_checkpoint(const LlamaConfig& config, const std::string& dir, uint64_t seed,
                     at::ScalarType dtype, size_t max_shard_bytes) {
  fs::create_directories(dir);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  constexpr int64_t kChunkElements = 16 << 20;  // draw at most 64 MiB of float32 at a time
  write_shards(hf_layout(config), dir, dtype, max_shard_bytes, "model",
               [&](const std::string& name, const std::vector<int64_t>& shape) {
                 auto t = at::empty(shape, at::TensorOptions().dtype(dtype));
                 if (shape.size() == 1) return t.fill_(1.0);
                 const int64_t rows = shape[0], cols = shape[1];
                 const int64_t step =
                     std::max<int64_t>(1, kChunkElements / std::max<int64_t>(cols, 1));
                 for (int64_t r = 0; r < rows; r += step) {
                   const int64_t n = std::min(step, rows - r);
                   auto draw = at::empty({n, cols}, at::kFloat);
                   draw.normal_(0.0, config.initializer_range, gen);
                   t.narrow(0, r, n).copy_(draw);
                 }
                 return t;
               });
  write_config(config, dir, dtype);
  write_generation_config(config, dir);
}

}  // namespace posttrain::core
