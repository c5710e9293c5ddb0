#include "core/data/sources.h"

#include <filesystem>

namespace posttrain::core {

namespace fs = std::filesystem;

std::string check_data_sources(const nlohmann::json& v) {
  if (!v.is_array()) return std::string("expected a list of sources, got ") + v.type_name();
  for (size_t i = 0; i < v.size(); ++i) {
    const auto& s = v[i];
    const std::string at = "[" + std::to_string(i) + "]";
    std::string path;
    if (s.is_string()) {
      path = s.get<std::string>();
    } else if (s.is_object()) {
      for (auto it = s.begin(); it != s.end(); ++it) {
        if (it.key() != "path" && it.key() != "weight") {
          return at + ": unknown key '" + it.key() + "' (path, weight)";
        }
      }
      if (!s.contains("path") || !s["path"].is_string()) return at + ".path: expected a string";
      path = s["path"].get<std::string>();
      if (s.contains("weight") && (!s["weight"].is_number() || s["weight"].get<double>() <= 0)) {
        return at + ".weight: expected a number > 0";
      }
    } else {
      return at + ": expected a path or {\"path\", \"weight\"}";
    }
    if (!fs::exists(path)) return at + ": path does not exist: " + path;
  }
  return "";
}

}  // namespace posttrain::core
