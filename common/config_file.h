// Config files (stage configs, recipes) in JSON or YAML, read into one nlohmann::json so every
// reader checks one schema whatever the file's format. The extension decides: `.yaml` / `.yml`
// is YAML (yaml-cpp, libyaml-cpp-dev), anything else JSON with `//` and `/* */` comments.
//
// YAML scalars resolve as YAML 1.2's core schema does, so a YAML file means what the same JSON
// file means: `null`, `~` or nothing -> null; `true` / `false` (any case style) -> bool;
// `42`, `0x2a`, `0o52` -> integer; `1e-5`, `0.5`, `.5` -> number (unlike PyYAML, `1e-5` needs
// no dot); everything else, and every quoted scalar, -> string. `.inf` and `.nan` are refused
// (JSON has neither). A YAML file also records the line of every key, so an error on a key
// (from the schema, long after parsing) can name its line.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "common/error.h"

namespace posttrain {

// 1-based line of each key of a document by its path as error messages name it:
// "optimizer.lr", "rounds[0].stages[1].name" (a sequence item's path carries its index).
using KeyLines = std::map<std::string, int64_t>;

struct ConfigDocument {
  std::string path;
  nlohmann::json value;
  KeyLines key_lines;  // empty for JSON files

  // The line of `field`, else of its nearest enclosing key ("data.sources[3].path" falls back
  // to "data.sources[3]", then "data.sources", "data"); 0 when none is known.
  int64_t line_of(const std::string& field) const;
  // `e` with the line of its field filled in when it names this file and no line; else `e`.
  InputError locate(const InputError& e) const;
};

// Whether `path` ends in .yaml or .yml (any case).
bool is_yaml_path(const std::string& path);

// Reads a config file as JSON or YAML (see above). A syntax error is an InputError naming the
// file and line; a file that cannot be read, an IoError.
ConfigDocument read_config_file(const std::string& path);

// One YAML document -> JSON (see above); errors name `source` and the line. Keys' lines go to
// *key_lines when given. Duplicate keys, non-scalar keys, several documents, nesting deeper than
// kMaxJsonDepth and aliases expanding past a million nodes are errors.
nlohmann::json yaml_to_json(const std::string& text, const std::string& source,
                            KeyLines* key_lines = nullptr);

}  // namespace posttrain
