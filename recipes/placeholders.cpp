#include "recipes/placeholders.h"

#include "common/error.h"

namespace posttrain::recipes {
namespace {

bool known_name(const std::string& name) {
  static const char* kNames[] = {"policy", "previous_policy", "reward_model", "round",
                                 "store",  "out",             "run_dir"};
  for (const char* n : kNames) {
    if (name == n) return true;
  }
  return name.rfind("stage:", 0) == 0 && name.size() > 6;
}

// Calls fn(name) for each "${name}" of `text`; returns text with each replaced by fn's result.
std::string scan(const std::string& text, const std::string& where,
                 const std::function<std::string(const std::string&)>& fn) {
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t open = text.find("${", pos);
    if (open == std::string::npos) break;
    size_t close = text.find('}', open + 2);
    if (close == std::string::npos) {
      throw InputError({"", 0, where}, "'${' without a closing '}' in \"" + text + "\"");
    }
    std::string name = text.substr(open + 2, close - open - 2);
    if (!known_name(name)) {
      throw InputError({"", 0, where},
                       "unknown placeholder ${" + name +
                           "} (known: ${policy}, ${previous_policy}, ${reward_model}, ${round}, "
                           "${store}, ${out}, ${run_dir}, ${stage:NAME})");
    }
    out += text.substr(pos, open - pos);
    out += fn(name);
    pos = close + 1;
  }
  out += text.substr(pos);
  return out;
}

void walk(const nlohmann::json& value, const std::string& where,
          const std::function<void(const std::string&, const std::string&)>& on_string) {
  if (value.is_string()) {
    on_string(value.get<std::string>(), where);
  } else if (value.is_object()) {
    for (const auto& [key, v] : value.items()) walk(v, where + "." + key, on_string);
  } else if (value.is_array()) {
    for (size_t i = 0; i < value.size(); ++i) {
      walk(value[i], where + "[" + std::to_string(i) + "]", on_string);
    }
  }
}

}  // namespace

std::vector<std::string> placeholders_in(const nlohmann::json& value, const std::string& where) {
  std::vector<std::string> names;
  walk(value, where, [&](const std::string& text, const std::string& at) {
    scan(text, at, [&](const std::string& name) {
      names.push_back(name);
      return std::string();
    });
  });
  return names;
}

nlohmann::json substitute(
    const nlohmann::json& value,
    const std::function<std::optional<std::string>(const std::string&)>& lookup,
    const std::string& where) {
  auto replace = [&](const std::string& text, const std::string& at) {
    return scan(text, at, [&](const std::string& name) {
      std::optional<std::string> v = lookup(name);
      if (!v) {
        throw InputError({"", 0, at}, "${" + name + "} has no value at this point of the recipe");
      }
      return *v;
    });
  };
  if (value.is_string()) {
    const std::string text = value.get<std::string>();
    if (text == "${round}") return std::stoi(replace(text, where));
    return replace(text, where);
  }
  if (value.is_object()) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [key, v] : value.items()) out[key] = substitute(v, lookup, where + "." + key);
    return out;
  }
  if (value.is_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = 0; i < value.size(); ++i) {
      out.push_back(substitute(value[i], lookup, where + "[" + std::to_string(i) + "]"));
    }
    return out;
  }
  return value;
}

}  // namespace posttrain::recipes
