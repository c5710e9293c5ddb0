// Helpers shared by the model/checkpoint/log-prob tests: fixture paths, reading reference JSON,
// building input tensors.
#pragma once

#include <ATen/ATen.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace posttrain::core::testing {

inline std::string model_fixture(const std::string& name) {
  return std::string(POSTTRAIN_FIXTURES) + "/models/" + name;
}

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

inline at::Tensor ids_tensor(const std::vector<int64_t>& ids) {
  return at::tensor(ids, at::kLong).view({1, static_cast<int64_t>(ids.size())});
}

// A fresh empty directory under the system temp dir.
inline std::string temp_dir(const std::string& tag) {
  std::string templ = "/tmp/posttrain_" + tag + "_XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  return std::string(mkdtemp(buf.data()));
}

}  // namespace posttrain::core::testing
