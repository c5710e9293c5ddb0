// Config files as JSON or YAML (see config_file.h). YAML goes through yaml-cpp's node tree and is
// converted here, so the scalar rules are ours (YAML 1.2 core schema) rather than yaml-cpp's
// YAML 1.1 conversions (which read `yes` as a bool and `1e-5` as text).
#include "common/config_file.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <vector>

#include "common/json_depth.h"

namespace posttrain {
namespace {

// Aliases share nodes in yaml-cpp, so a small file can stand for an exponential tree.
constexpr int64_t kMaxYamlNodes = 1000000;

int64_t yaml_line(const YAML::Node& node) { return node.Mark().line + 1; }  // Mark is 0-based

// A plain (unquoted, untagged) scalar under YAML 1.2's core schema.
nlohmann::json plain_scalar(const std::string& s, const std::string& source, int64_t line) {
  static const std::regex kInt("[-+]?[0-9]+");
  static const std::regex kOct("0o[0-7]+");
  static const std::regex kHex("0x[0-9a-fA-F]+");
  static const std::regex kFloat("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
  static const std::regex kSpecial("[-+]?\\.(inf|Inf|INF)|\\.(nan|NaN|NAN)");
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  const bool oct = std::regex_match(s, kOct), hex = std::regex_match(s, kHex);
  if (oct || hex || std::regex_match(s, kInt)) {
    const char* digits = s.c_str() + (oct ? 2 : 0);
    const int base = oct ? 8 : hex ? 16 : 10;
    errno = 0;
    const long long v = std::strtoll(digits, nullptr, base);
    if (errno == 0) return static_cast<int64_t>(v);
    errno = 0;
    const unsigned long long u = std::strtoull(digits, nullptr, base);
    if (errno == 0 && s[0] != '-') return static_cast<uint64_t>(u);
    return std::strtod(s.c_str(), nullptr);  // past 64 bits: a number, as JSON's parser makes it
  }
  if (std::regex_match(s, kFloat)) return std::strtod(s.c_str(), nullptr);
  if (std::regex_match(s, kSpecial)) {
    throw InputError(Location{source, line, ""},
                     "'" + s + "': infinities and NaN are not config values (JSON has neither)");
  }
  return s;
}

class YamlConverter {
 public:
  YamlConverter(std::string source, KeyLines* lines) : source_(std::move(source)), lines_(lines) {}

  nlohmann::json convert(const YAML::Node& node, const std::string& path, int depth) {
    if (++nodes_ > kMaxYamlNodes) {
      throw InputError(Location{source_, yaml_line(node), path},
                       "more than " + std::to_string(kMaxYamlNodes) + " values (aliases?)");
    }
    if (depth > kMaxJsonDepth) {
      throw InputError(Location{source_, yaml_line(node), path},
                       "nested deeper than " + std::to_string(kMaxJsonDepth));
    }
    switch (node.Type()) {
      case YAML::NodeType::Null:
      case YAML::NodeType::Undefined:
        return nullptr;
      case YAML::NodeType::Scalar:
        return scalar(node);
      case YAML::NodeType::Sequence: {
        nlohmann::json out = nlohmann::json::array();
        for (size_t i = 0; i < node.size(); ++i) {
          const std::string at = path + "[" + std::to_string(i) + "]";
          record(at, node[i]);
          out.push_back(convert(node[i], at, depth + 1));
        }
        return out;
      }
      case YAML::NodeType::Map: {
        nlohmann::json out = nlohmann::json::object();
        for (auto it = node.begin(); it != node.end(); ++it) {
          const YAML::Node& key = it->first;
          if (!key.IsScalar()) {
            throw InputError(Location{source_, yaml_line(key), path},
                             "a key must be a plain string");
          }
          const std::string name = key.Scalar();
          const std::string at = path.empty() ? name : path + "." + name;
          if (out.contains(name)) {
            throw InputError(Location{source_, yaml_line(key), at}, "duplicate key");
          }
          record(at, key);
          out[name] = convert(it->second, at, depth + 1);
        }
        return out;
      }
    }
    return nullptr;
  }

 private:
  nlohmann::json scalar(const YAML::Node& node) const {
    const std::string& tag = node.Tag();
    // "!" marks a quoted scalar; !!str forces a string too.
    if (tag == "!" || tag == "tag:yaml.org,2002:str") return node.Scalar();
    return plain_scalar(node.Scalar(), source_, yaml_line(node));
  }

  void record(const std::string& path, const YAML::Node& node) {
    if (lines_ != nullptr) lines_->emplace(path, yaml_line(node));
  }

  std::string source_;
  KeyLines* lines_;
  int64_t nodes_ = 0;
};

bool ends_with_ci(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  // suffix is lower case; the path's tail is compared lowered.
  return std::equal(suffix.begin(), suffix.end(), s.end() - suffix.size(), [](char a, char b) {
    return a == std::tolower(static_cast<unsigned char>(b));
  });
}

// `field` without its last ".key" or "[i]"; "" at the top.
std::string parent_field(const std::string& field) {
  const size_t cut = field.find_last_of(".[");
  return cut == std::string::npos ? "" : field.substr(0, cut);
}

}  // namespace

int64_t ConfigDocument::line_of(const std::string& field) const {
  for (std::string f = field; !f.empty(); f = parent_field(f)) {
    const auto it = key_lines.find(f);
    if (it != key_lines.end()) return it->second;
  }
  return 0;
}

InputError ConfigDocument::locate(const InputError& e) const {
  const Location& where = e.where();
  if (where.file != path || where.line != 0 || where.field.empty()) return e;
  const int64_t line = line_of(where.field);
  if (line == 0) return e;
  // what() is "<where.describe()>: <message>" (common/error.cpp); keep the message part.
  const std::string what = e.what(), prefix = where.describe() + ": ";
  const std::string message =
      what.compare(0, prefix.size(), prefix) == 0 ? what.substr(prefix.size()) : what;
  return InputError(Location{where.file, line, where.field}, message);
}

bool is_yaml_path(const std::string& path) {
  return ends_with_ci(path, ".yaml") || ends_with_ci(path, ".yml");
}

nlohmann::json yaml_to_json(const std::string& text, const std::string& source,
                            KeyLines* key_lines) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp's own nesting guard (its message says only "bad file").
    throw InputError(Location{source, e.mark.is_null() ? 0 : e.mark.line + 1, ""},
                     "YAML nested deeper than " + std::to_string(kMaxJsonDepth));
  } catch (const YAML::Exception& e) {
    // yaml-cpp's marks are 0-based; a mark past the end (e.g. an unclosed bracket) still names
    // the last line it reached.
    const int64_t line = e.mark.is_null() ? 0 : e.mark.line + 1;
    throw InputError(Location{source, line, ""}, "not valid YAML (" + e.msg + ")");
  }
  if (docs.size() > 1) {
    throw InputError(
        Location{source, yaml_line(docs[1]), ""},
        "holds " + std::to_string(docs.size()) + " YAML documents; a config is one document");
  }
  if (docs.empty()) return nullptr;
  YamlConverter converter(source, key_lines);
  return converter.convert(docs[0], "", 1);
}

ConfigDocument read_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open config " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw IoError("cannot read config " + path);
  ConfigDocument doc;
  doc.path = path;
  if (is_yaml_path(path)) {
    doc.value = yaml_to_json(ss.str(), path, &doc.key_lines);
  } else {
    doc.value = parse_json(ss.str(), Location{path, 0, ""}, /*ignore_comments=*/true);
  }
  return doc;
}

}  // namespace posttrain
