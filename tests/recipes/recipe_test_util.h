// What the recipe tests share: files of the source tree (found from POSTTRAIN_FIXTURES) and
// the one-line error of checking a recipe.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "recipes/recipe.h"

namespace posttrain::recipes::test_util {

// A file of the repository, given relative to its root.
inline std::string repo_file(const std::string& relative) {
  return (std::filesystem::path(POSTTRAIN_FIXTURES) / ".." / ".." / relative)
      .lexically_normal()
      .string();
}

// The tiny SFT example data every micro recipe trains on.
inline const std::string& tiny_sft_data() {
  static const std::string path = repo_file("sft/examples/tiny_sft.jsonl");
  return path;
}

// The error of checking `doc` (paths skipped) over `rounds` rounds; "" when it checks.
inline std::string check_error(const nlohmann::json& doc, int rounds = 2) {
  try {
    check_recipe(parse_recipe(doc, "r.json"), rounds, /*skip_paths=*/true);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace posttrain::recipes::test_util
