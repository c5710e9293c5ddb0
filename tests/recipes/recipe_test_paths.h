// Paths the recipe tests share: files of the source tree, found from POSTTRAIN_FIXTURES.
#pragma once

#include <filesystem>
#include <string>

namespace posttrain::recipes::test_paths {

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

}  // namespace posttrain::recipes::test_paths
