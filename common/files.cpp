#include "common/files.h"

#include <ftw.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/error.h"

namespace posttrain {
namespace {

thread_local std::string failed_entry;
thread_local int failed_errno = 0;

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  if (::remove(path) != 0 && errno != ENOENT) {
    failed_entry = path;
    failed_errno = errno;
    return 1;  // stops the walk
  }
  return 0;
}

}  // namespace

void remove_tree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;  // nothing there
  failed_entry.clear();
  if (::nftw(path.c_str(), remove_entry, 32, FTW_DEPTH | FTW_PHYS) != 0) {
    if (!failed_entry.empty())
      throw IoError("cannot remove " + failed_entry + ": " + std::strerror(failed_errno));
    throw IoError("cannot remove " + path + ": " + std::strerror(errno));
  }
}

}  // namespace posttrain
