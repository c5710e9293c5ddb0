// Config validation: every section/key checked against the schema, overrides applied first, so
// one bad key anywhere stops the run before a model is loaded.
#include "core/train/config.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>

#include "common/config_file.h"
#include "common/error.h"

namespace posttrain::core {

namespace {

const char* type_name(ConfigType t) {
  switch (t) {
    case ConfigType::kString: return "string";
    case ConfigType::kInt: return "integer";
    case ConfigType::kFloat: return "number";
    case ConfigType::kBool: return "bool";
    case ConfigType::kPath: return "path";
    case ConfigType::kJson: return "json";
  }
  return "?";
}

InputError key_error(const std::string& source, const std::string& name, const std::string& msg) {
  return InputError(Location{source, 0, name}, msg);
}

void check_value(const ConfigKey& k, const nlohmann::json& v, const std::string& source) {
  const std::string name = k.section + "." + k.key;
  auto wrong = [&]() {
    return key_error(source, name,
                     std::string("expected ") + type_name(k.type) + ", got " + v.type_name() +
                         " (" + v.dump() + ")");
  };
  switch (k.type) {
    case ConfigType::kString:
    case ConfigType::kPath:
      if (!v.is_string()) throw wrong();
      break;
    case ConfigType::kInt:
      if (!v.is_number_integer()) throw wrong();
      break;
    case ConfigType::kFloat:
      if (!v.is_number()) throw wrong();
      break;
    case ConfigType::kBool:
      if (!v.is_boolean()) throw wrong();
      break;
    case ConfigType::kJson:
      break;
  }
  if (!k.choices.empty()) {
    const std::string s = v.get<std::string>();
    bool ok = false;
    std::string all;
    for (const auto& c : k.choices) {
      ok = ok || c == s;
      all += (all.empty() ? "" : "|") + c;
    }
    if (!ok) throw key_error(source, name, "'" + s + "' is not one of " + all);
  }
  if (k.type == ConfigType::kPath && !std::filesystem::exists(v.get<std::string>())) {
    throw key_error(source, name, "path does not exist: " + v.get<std::string>());
  }
  if (k.check) {
    const std::string problem = k.check(v);
    if (!problem.empty()) throw key_error(source, name, problem);
  }
}

// Parses the right-hand side of --set for key `k`.
nlohmann::json parse_override_value(const ConfigKey& k, const std::string& text) {
  if (k.type == ConfigType::kString || k.type == ConfigType::kPath) {
    // Quoted JSON strings are accepted too.
    if (text.size() >= 2 && text.front() == '"' && text.back() == '"') {
      try {
        return nlohmann::json::parse(text);
      } catch (const nlohmann::json::exception&) {
      }
    }
    return text;
  }
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    return text;  // reported as a wrong type by check_value
  }
}

}  // namespace

std::function<std::string(const nlohmann::json&)> int_range(int64_t lo, int64_t hi) {
  return [lo, hi](const nlohmann::json& v) -> std::string {
    // Unsigned values past INT64_MAX are out of range too (get<int64_t> would wrap them).
    const bool in = v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(hi) &&
                                                 static_cast<int64_t>(v.get<uint64_t>()) >= lo
                                           : v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
    if (in) return "";
    return "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v.dump();
  };
}

void ConfigSchema::add(ConfigKey key) {
  if (find(key.section, key.key)) {
    throw Error("config schema: key " + key.section + "." + key.key + " added twice");
  }
  keys_.push_back(std::move(key));
}

const ConfigKey* ConfigSchema::find(const std::string& section, const std::string& key) const {
  for (const auto& k : keys_) {
    if (k.section == section && k.key == key) return &k;
  }
  return nullptr;
}

nlohmann::json ConfigSchema::resolve(const nlohmann::json& file_json,
                                     const std::vector<std::string>& overrides,
                                     const std::string& source) const {
  if (!file_json.is_object()) {
    throw InputError(Location{source, 0, ""}, "a config must be a JSON object of sections");
  }
  std::set<std::string> sections;
  for (const auto& k : keys_) sections.insert(k.section);

  nlohmann::json merged = file_json;
  std::set<std::string> overridden;  // "section.key" given with --set
  for (const auto& text : overrides) {
    auto eq = text.find('=');
    auto dot = text.find('.');
    if (eq == std::string::npos || dot == std::string::npos || dot > eq) {
      throw InputError(Location{"--set", 0, text}, "expected section.key=value");
    }
    const std::string section = text.substr(0, dot), key = text.substr(dot + 1, eq - dot - 1);
    const ConfigKey* k = find(section, key);
    if (!k) throw InputError(Location{"--set", 0, section + "." + key}, "unknown config key");
    if (merged.contains(section) && !merged[section].is_object()) {
      throw key_error(source, section, std::string("a section must be an object, got ") +
                                           merged[section].type_name());
    }
    merged[section][key] = parse_override_value(*k, text.substr(eq + 1));
    overridden.insert(section + "." + key);
  }

  nlohmann::json out = nlohmann::json::object();
  for (const auto& s : sections) out[s] = nlohmann::json::object();
  for (auto it = merged.begin(); it != merged.end(); ++it) {
    if (!sections.count(it.key())) {
      std::string all;
      for (const auto& s : sections) all += (all.empty() ? "" : ", ") + s;
      throw key_error(source, it.key(), "unknown section (sections: " + all + ")");
    }
    if (!it.value().is_object()) {
      throw key_error(source, it.key(), std::string("a section must be an object, got ") +
                                            it.value().type_name());
    }
    for (auto kv = it.value().begin(); kv != it.value().end(); ++kv) {
      if (!find(it.key(), kv.key())) {
        throw key_error(source, it.key() + "." + kv.key(), "unknown config key");
      }
    }
  }
  for (const auto& k : keys_) {
    const std::string name = k.section + "." + k.key;
    nlohmann::json v = k.default_value;
    if (merged.contains(k.section) && merged[k.section].contains(k.key)) {
      v = merged[k.section][k.key];
    }
    if (v.is_null() && k.default_value.is_null()) {
      if (k.required) throw key_error(source, name, "missing (required)");
    } else {
      // An explicit null for a key with a default is a wrong type. A bad value given with --set
      // is --set's error, not the file's.
      check_value(k, v, overridden.count(name) ? "--set" : source);
    }
    out[k.section][k.key] = v;
  }
  // Keys the user gave (file or --set, any value, the default too) without the key they need.
  for (const auto& k : keys_) {
    if (k.needs.empty()) continue;
    const std::string name = k.section + "." + k.key;
    const auto dot = k.needs.find('.');
    const ConfigKey* needed =
        dot == std::string::npos ? nullptr : find(k.needs.substr(0, dot), k.needs.substr(dot + 1));
    if (needed == nullptr) throw Error("config schema: " + name + " needs unknown key " + k.needs);
    const bool given = merged.contains(k.section) && merged[k.section].contains(k.key) &&
                       !merged[k.section][k.key].is_null();
    if (given && out[needed->section][needed->key].is_null()) {
      throw key_error(overridden.count(name) ? "--set" : source, name,
                      "only used together with " + k.needs + ", which is not set (set " + k.needs +
                          " too, or remove " + name + ")");
    }
  }
  return out;
}

nlohmann::json ConfigSchema::load(const std::string& path,
                                  const std::vector<std::string>& overrides) const {
  const ConfigDocument doc = read_config_file(path);
  try {
    return resolve(doc.value, overrides, path);
  } catch (const InputError& e) {
    throw doc.locate(e);  // a YAML file's errors name the key's line
  }
}

std::string ConfigSchema::describe() const {
  std::ostringstream out;
  std::vector<std::string> order;
  for (const auto& k : keys_) {
    if (std::find(order.begin(), order.end(), k.section) == order.end()) order.push_back(k.section);
  }
  for (const auto& s : order) {
    out << s << ":\n";
    for (const auto& k : keys_) {
      if (k.section != s) continue;
      out << "  " << s << "." << k.key << " (" << type_name(k.type);
      if (!k.choices.empty()) {
        out << ": ";
        for (size_t i = 0; i < k.choices.size(); ++i) out << (i ? "|" : "") << k.choices[i];
      }
      if (k.required) {
        out << ", required";
      } else if (!k.default_value.is_null()) {
        out << ", default " << k.default_value.dump();
      }
      if (!k.needs.empty()) out << ", only with " << k.needs;
      out << ")\n      " << k.doc << "\n";
    }
  }
  return out.str();
}

}  // namespace posttrain::core
