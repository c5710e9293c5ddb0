// Stage configuration files: nested sections (model, data, optimizer, schedule, training,
// output) in JSON (`//` comments allowed) or, by extension .yaml / .yml, in YAML
// (common/config_file.h: the same JSON, so the same schema). A ConfigSchema lists every key a
// stage accepts with its type, default and one line of documentation; resolve() validates a file
// plus repeatable `--set section.key=value` overrides before anything runs and returns the file
// with defaults filled in. An unknown section or key, a wrong type, a value outside its choices
// or a missing input path is one InputError naming the file and the key ("optimizer.lr"; in a
// YAML file, its line too), and so is a key given without the key it depends on
// (ConfigKey::needs). A bad value given with --set names "--set" instead of the file.
// The trainer's own sections come from add_trainer_keys() (trainer_options.h); each stage adds
// its model/data keys, so SFT, reward and DPO share one format.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace posttrain::core {

enum class ConfigType {
  kString,
  kInt,
  kFloat,     // accepts integers too
  kBool,
  kPath,      // a string naming a file or folder that must exist
  kJson,      // any JSON value; the key's `check` validates it
};

struct ConfigKey {
  ConfigKey(std::string section_, std::string key_, ConfigType type_,
            nlohmann::json default_value_, bool required_, std::vector<std::string> choices_,
            std::string doc_,
            std::function<std::string(const nlohmann::json&)> check_ = nullptr)
      : section(std::move(section_)), key(std::move(key_)), type(type_),
        default_value(std::move(default_value_)), required(required_),
        choices(std::move(choices_)), doc(std::move(doc_)), check(std::move(check_)) {}

  std::string section;
  std::string key;
  ConfigType type = ConfigType::kString;
  // The value used when the file leaves the key out; null = unset (allowed unless `required`).
  nlohmann::json default_value;
  bool required = false;
  std::vector<std::string> choices;  // for kString: the allowed values (empty = any)
  std::string doc;                   // one line for --help and the README
  // Extra validation of a present value: returns what is wrong with it, or "" when it is fine.
  std::function<std::string(const nlohmann::json& value)> check;
  // "section.key" of another key this one only means something with (data.store_weight needs
  // data.store). Giving this key a non-null value, in the file or with --set, while that key is
  // unset (null) is an error naming this key, even when the value equals the default.
  std::string needs;
};

// A ConfigKey::check for an integer key: the value must lie in [lo, hi] ("must be in [1, 65536],
// got 1000000000000"). Every integer key that sizes work or memory has one, so a typo such as
// micro_batch_size 10^12 is an error instead of a run that never makes progress.
std::function<std::string(const nlohmann::json&)> int_range(int64_t lo, int64_t hi);

class ConfigSchema {
 public:
  void add(ConfigKey key);
  const std::vector<ConfigKey>& keys() const { return keys_; }
  const ConfigKey* find(const std::string& section, const std::string& key) const;

  // Validates `file_json` (read from `source`, used in messages) with `overrides`
  // ("section.key=value"; the value is parsed as JSON when it is valid JSON and the key is not a
  // string, else taken as a string) applied on top. Returns every section with every key,
  // defaults filled, unset optional keys as null. Relative kPath values are kept as written.
  nlohmann::json resolve(const nlohmann::json& file_json, const std::vector<std::string>& overrides,
                         const std::string& source) const;

  // Reads a config file (JSON with `//` and `/* */` comments, or YAML by extension) and resolves
  // it; errors on a YAML file's keys name their line.
  nlohmann::json load(const std::string& path, const std::vector<std::string>& overrides) const;

  // One block per section listing "  key (type, default X): doc".
  std::string describe() const;

 private:
  std::vector<ConfigKey> keys_;
};

}  // namespace posttrain::core
