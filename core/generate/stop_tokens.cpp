#include "core/generate/stop_tokens.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"

namespace posttrain::core::generate {

std::vector<int64_t> model_stop_token_ids(const std::string& model_dir, const LlamaConfig& config) {
  const std::string path = model_dir + "/generation_config.json";
  if (!std::filesystem::exists(path)) return config.eos_token_ids;
  std::ifstream in(path);
  if (!in) throw IoError("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  const auto j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    throw InputError(Location{path, 0, ""}, "not a JSON object");
  }
  if (!j.contains("eos_token_id") || j["eos_token_id"].is_null()) return config.eos_token_ids;
  const auto& e = j["eos_token_id"];
  std::vector<int64_t> ids;
  auto take = [&](const nlohmann::json& v, const std::string& field) {
    if (!v.is_number_integer()) throw InputError(Location{path, 0, field}, "expected a token id");
    const int64_t id = v.get<int64_t>();
    if (id < 0 || id >= config.vocab_size) {
      throw InputError(Location{path, 0, field},
                       "token id " + std::to_string(id) + " outside the vocabulary");
    }
    ids.push_back(id);
  };
  if (e.is_array()) {
    for (size_t i = 0; i < e.size(); ++i) take(e[i], "eos_token_id[" + std::to_string(i) + "]");
  } else {
    take(e, "eos_token_id");
  }
  return ids;
}

}  // namespace posttrain::core::generate
