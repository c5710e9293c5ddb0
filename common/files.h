// File-system helpers every layer may need.
#pragma once

#include <string>

namespace posttrain {

// Removes `path` and everything under it (no error when it does not exist; symlinks are removed,
// never followed). Throws IoError naming the entry that could not be removed.
// Why not std::filesystem::remove_all: libtorch.so exports its own copies of the
// std::filesystem functions, and in binaries linked with it remove_all resolves to that copy,
// which crashes on a non-empty folder (seen with torch 2.11.0).
void remove_tree(const std::string& path);

}  // namespace posttrain
