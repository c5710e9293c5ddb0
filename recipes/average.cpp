// Weighted checkpoint averaging, streamed tensor by tensor. Order of work: validate options,
// compare configs / tokenizers / tensor layouts of every input against the first, then write
// each of the first input's weight files with a streaming safetensors writer, accumulating each
// tensor in float32 from fresh memory maps, then the index and the copied side files.
#include "recipes/average.h"

#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/error.h"
#include "common/json_depth.h"
#include "common/sha256.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/checkpoint/safetensors.h"
#include "datastore/store.h"

namespace posttrain::recipes {

const std::vector<std::string> kIgnoredConfigKeys = {"_name_or_path", "transformers_version",
                                                     "torch_dtype", "dtype", "use_cache"};
const std::vector<std::string> kTokenizerFiles = {"tokenizer.json",
                                                  "tokenizer_config.json",
                                                  "special_tokens_map.json",
                                                  "chat_template.jinja",
                                                  "vocab.json",
                                                  "merges.txt"};

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
constexpr const char* kIndexName = "model.safetensors.index.json";

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot read " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

json read_json(const fs::path& path) {
  const std::string text = read_file(path);
  check_json_depth(text, Location{path.string(), 0, ""});
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw InputError(Location{path.string(), 0, ""}, "not valid JSON");
  return j;
}

// config.json without the keys that do not change the weights.
json comparable_config(const std::string& dir) {
  const fs::path path = fs::path(dir) / "config.json";
  if (!fs::exists(path)) throw IoError("checkpoint " + dir + " has no config.json");
  json j = read_json(path);
  if (!j.is_object()) throw InputError(Location{path.string(), 0, ""}, "expected a JSON object");
  for (const auto& key : kIgnoredConfigKeys) j.erase(key);
  return j;
}

// The first differing key between two configs ("" when equal), with both values.
std::string config_difference(const json& a, const json& b) {
  std::set<std::string> keys;
  for (auto it = a.begin(); it != a.end(); ++it) keys.insert(it.key());
  for (auto it = b.begin(); it != b.end(); ++it) keys.insert(it.key());
  for (const auto& key : keys) {
    const json va = a.contains(key) ? a[key] : json("<absent>");
    const json vb = b.contains(key) ? b[key] : json("<absent>");
    if (va != vb) return "field '" + key + "' is " + vb.dump() + " here but " + va.dump() + " in ";
  }
  return "";
}

void check_tokenizers(const std::vector<std::string>& inputs) {
  for (const auto& name : kTokenizerFiles) {
    const fs::path first = fs::path(inputs[0]) / name;
    const bool present = fs::exists(first);
    const std::string hash = present ? sha256_hex(read_file(first)) : "";
    for (size_t i = 1; i < inputs.size(); ++i) {
      const fs::path other = fs::path(inputs[i]) / name;
      if (fs::exists(other) != present) {
        throw InputError(
            Location{other.string(), 0, ""},
            "tokenizer mismatch: " + name + " is " +
                (present ? "missing here but present in " : "present here but not in ") +
                inputs[0]);
      }
      if (present && sha256_hex(read_file(other)) != hash) {
        throw InputError(
            Location{other.string(), 0, ""},
            "tokenizer mismatch: " + name + " differs from " + first.string() + " (SHA-256)");
      }
    }
  }
}

struct TensorInfo {
  std::vector<int64_t> shape;
  at::ScalarType dtype = at::kFloat;
  std::string file;  // full path of the file holding it
};

// Every tensor of `dir`: name -> shape, dtype, file (headers only; no data is read).
std::map<std::string, TensorInfo> tensor_infos(const std::string& dir) {
  std::map<std::string, TensorInfo> out;
  std::map<std::string, std::vector<std::string>> by_file;
  for (const auto& [name, file] : core::checkpoint_tensor_files(dir)) by_file[file].push_back(name);
  for (const auto& [file, names] : by_file) {
    core::SafetensorsFile f(file);
    for (const auto& name : names) {
      if (!f.contains(name)) {
        throw InputError(Location{file, 0, name},
                         "tensor '" + name + "' listed in the index is not in this file");
      }
      const auto& e = f.entry(name);
      out[name] = TensorInfo{e.shape, e.dtype, file};
    }
  }
  return out;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void check_layouts(const std::vector<std::string>& inputs,
                   const std::vector<std::map<std::string, TensorInfo>>& infos) {
  for (size_t i = 1; i < inputs.size(); ++i) {
    for (const auto& [name, info] : infos[0]) {
      const auto it = infos[i].find(name);
      if (it == infos[i].end()) {
        throw InputError(Location{inputs[i], 0, name},
                         "tensor '" + name + "' of " + inputs[0] + " is missing here");
      }
      if (it->second.shape != info.shape) {
        throw InputError(Location{it->second.file, 0, name},
                         "tensor '" + name + "' has shape " + shape_text(it->second.shape) +
                             " here but " + shape_text(info.shape) + " in " + inputs[0]);
      }
    }
    for (const auto& [name, info] : infos[i]) {
      if (infos[0].count(name) == 0) {
        throw InputError(Location{info.file, 0, name},
                         "tensor '" + name + "' is not in " + inputs[0]);
      }
    }
  }
}

std::vector<double> normalised_weights(const AverageOptions& options) {
  std::vector<double> w = options.weights;
  if (w.empty()) w.assign(options.inputs.size(), 1.0);
  if (w.size() != options.inputs.size()) {
    throw UsageError("average: " + std::to_string(w.size()) + " weights for " +
                     std::to_string(options.inputs.size()) + " checkpoints");
  }
  double sum = 0;
  for (double x : w) {
    if (!(x > 0) || !std::isfinite(x)) {
      throw UsageError("average: weights must be positive finite numbers, got " +
                       std::to_string(x));
    }
    sum += x;
  }
  for (double& x : w) x /= sum;
  return w;
}

// The mean of tensor `name`, [shape] float32, reading each input through a fresh mapping that
// is released before returning (so resident memory does not grow with the inputs).
at::Tensor mean_tensor(const std::string& name,
                       const std::vector<std::map<std::string, TensorInfo>>& infos,
                       const std::vector<double>& weights) {
  at::Tensor acc;
  for (size_t i = 0; i < infos.size(); ++i) {
    core::SafetensorsFile f(infos[i].at(name).file);
    at::Tensor x = f.view(name).to(at::kFloat);  // [shape]
    if (!acc.defined()) {
      acc = x.mul(weights[i]);
      if (acc.data_ptr() == x.data_ptr()) acc = acc.clone();
    } else {
      acc.add_(x, weights[i]);
    }
  }
  return acc;
}

void check_options(const AverageOptions& options) {
  if (options.inputs.size() < 2) {
    throw UsageError("average: give at least two checkpoints (got " +
                     std::to_string(options.inputs.size()) + ")");
  }
  if (options.output.empty()) throw UsageError("average: --output is required");
  const fs::path out = fs::weakly_canonical(options.output);
  for (const auto& in : options.inputs) {
    if (!fs::is_directory(in)) throw IoError("average: " + in + " is not a checkpoint folder");
    if (fs::weakly_canonical(in) == out) {
      throw UsageError("average: --output " + options.output + " is one of the inputs");
    }
  }
  // A finished checkpoint (or anything else) must not be replaced by accident.
  if (!options.overwrite && fs::is_directory(options.output) &&
      !fs::is_empty(options.output)) {
    throw UsageError("average: --output " + options.output +
                     " is not empty; pass --overwrite to replace the checkpoint in it");
  }
  if (fs::exists(options.output) && !fs::is_directory(options.output)) {
    throw UsageError("average: --output " + options.output + " is a file, not a folder");
  }
}

}  // namespace

std::vector<double> parse_weights(const std::string& text) {
  std::vector<double> out;
  std::stringstream items(text);
  std::string item;
  while (std::getline(items, item, ',')) {
    size_t used = 0;
    double value = 0;
    try {
      value = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size()) {
      throw UsageError("average: --weights item '" + item + "' is not a number");
    }
    out.push_back(value);
  }
  if (out.empty()) throw UsageError("average: --weights is empty");
  return out;
}

AverageResult average_checkpoints(const AverageOptions& options) {
  check_options(options);
  AverageResult result;
  result.weights = normalised_weights(options);
  const auto& inputs = options.inputs;

  const json config = comparable_config(inputs[0]);
  for (size_t i = 1; i < inputs.size(); ++i) {
    const std::string diff = config_difference(config, comparable_config(inputs[i]));
    if (!diff.empty()) {
      throw InputError(Location{(fs::path(inputs[i]) / "config.json").string(), 0, ""},
                       "config mismatch: " + diff + inputs[0] + "/config.json");
    }
  }
  check_tokenizers(inputs);
  std::vector<std::map<std::string, TensorInfo>> infos;
  for (const auto& dir : inputs) infos.push_back(tensor_infos(dir));
  check_layouts(inputs, infos);

  // The first input's files, each with its tensors in data order.
  std::map<std::string, std::vector<std::string>> names_by_file;
  for (const auto& [name, info] : infos[0]) names_by_file[info.file].push_back(name);
  fs::create_directories(options.output);
  for (const auto& entry : fs::directory_iterator(options.output)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 12 && name.rfind("model", 0) == 0 &&
        (name.find(".safetensors") != std::string::npos)) {
      fs::remove(entry.path());  // weights of an earlier run would mix with ours
    }
  }
  json weight_map = json::object();
  for (const auto& [file, names] : names_by_file) {
    core::TensorLayout layout;
    at::ScalarType dtype = infos[0].at(names.front()).dtype;
    {
      core::SafetensorsFile f(file);  // data order of the original file
      for (const auto& e : f.header().entries) {
        const auto it = infos[0].find(e.name);
        if (it == infos[0].end() || it->second.file != file) continue;  // not indexed here
        layout.emplace_back(e.name, e.shape);
        if (e.dtype != dtype) dtype = at::kFloat;  // mixed file: write lossless float32
      }
    }
    const std::string base = fs::path(file).filename().string();
    core::SafetensorsWriter writer((fs::path(options.output) / base).string(), layout, dtype);
    for (const auto& [name, shape] : layout) {
      at::Tensor mean = mean_tensor(name, infos, result.weights);  // [shape] float32
      writer.write(name, mean);
      result.tensors += 1;
      result.parameters += mean.numel();
      weight_map[name] = base;
    }
    writer.finish();
    result.bytes += writer.data_bytes();
    result.files.push_back(base);
  }
  if (fs::exists(fs::path(inputs[0]) / kIndexName)) {
    json index = {{"metadata", {{"total_size", result.bytes}}}, {"weight_map", weight_map}};
    std::ofstream(fs::path(options.output) / kIndexName) << index.dump(2) << "\n";
  }
  std::vector<std::string> side_files = {"config.json", "generation_config.json"};
  side_files.insert(side_files.end(), kTokenizerFiles.begin(), kTokenizerFiles.end());
  for (const auto& name : side_files) {
    const fs::path from = fs::path(inputs[0]) / name;
    if (fs::exists(from)) {
      fs::copy_file(from, fs::path(options.output) / name, fs::copy_options::overwrite_existing);
    }
  }
  return result;
}

int64_t record_average(const std::string& store_path, const AverageOptions& options,
                       const AverageResult& result, std::optional<int> round) {
  auto store = datastore::Store::open(store_path);
  auto txn = store.transaction();
  std::vector<int64_t> parents;
  int max_round = 0;
  for (const auto& input : options.inputs) {
    const std::string path = fs::weakly_canonical(input).string();
    std::optional<datastore::Checkpoint> known = store.checkpoint_by_path(path);
    if (!known) known = store.checkpoint_by_path(input);
    if (known) {
      parents.push_back(known->id);
      max_round = std::max(max_round, known->round);
    } else {
      parents.push_back(store.add_checkpoint(path, "external", 0));
    }
  }
  const int64_t id = store.add_checkpoint(fs::weakly_canonical(options.output).string(), "average",
                                          round.value_or(max_round), parents, result.weights);
  txn.commit();
  return id;
}

}  // namespace posttrain::recipes
