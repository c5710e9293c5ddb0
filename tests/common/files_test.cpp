#include "common/files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace posttrain {
namespace {

bool exists(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}

TEST(RemoveTree, RemovesNestedFoldersAndLinksWithoutFollowingThem) {
  char tmpl[] = "/tmp/posttrain_files_XXXXXX";
  std::string root = ::mkdtemp(tmpl);
  char keep_tmpl[] = "/tmp/posttrain_keep_XXXXXX";
  std::string keep = ::mkdtemp(keep_tmpl);
  std::ofstream(keep + "/precious") << "x";
  ::mkdir((root + "/a").c_str(), 0755);
  ::mkdir((root + "/a/b").c_str(), 0755);
  std::ofstream(root + "/a/b/file") << "data";
  std::ofstream(root + "/top") << "data";
  ASSERT_EQ(::symlink(keep.c_str(), (root + "/a/link").c_str()), 0);
  remove_tree(root);
  EXPECT_FALSE(exists(root));
  EXPECT_TRUE(exists(keep + "/precious"));  // the link was removed, not followed
  remove_tree(keep);
  EXPECT_FALSE(exists(keep));
}

TEST(RemoveTree, MissingPathIsNotAnError) {
  EXPECT_NO_THROW(remove_tree("/tmp/posttrain_surely_missing_dir_0123456789"));
}

}  // namespace
}  // namespace posttrain
