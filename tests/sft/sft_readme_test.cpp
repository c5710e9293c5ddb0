// sft/README.md's config block is what `posttrain sft --help` prints under "config keys:", so the
// documented keys, types, defaults and meanings cannot drift from the schema.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "tests/cli_run.h"

namespace posttrain::sft {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The text between the first ``` fence line after `heading` and the next one.
std::string fenced_block_after(const std::string& text, const std::string& heading) {
  const size_t h = text.find(heading);
  if (h == std::string::npos) return "<no heading " + heading + ">";
  const size_t open = text.find("```\n", h);
  if (open == std::string::npos) return "<no block>";
  const size_t begin = open + 4;
  const size_t close = text.find("\n```", begin);
  return text.substr(begin, close == std::string::npos ? std::string::npos : close + 1 - begin);
}

TEST(SftReadme, ConfigBlockEqualsTheHelpText) {
  const testing::CliRun help = testing::run_cli("sft --help");
  ASSERT_EQ(help.code, 0) << help.output;
  const size_t at = help.output.find("config keys:\n");
  ASSERT_NE(at, std::string::npos) << help.output;
  // The keys run from "config keys:" to the blank line before the command-line options.
  const size_t begin = at + std::string("config keys:\n").size();
  const std::string keys = help.output.substr(begin, help.output.find("\n\n", begin) - begin);
  std::string block = fenced_block_after(
      read_file(std::string(POSTTRAIN_FIXTURES) + "/../../sft/README.md"), "## Config keys");
  while (!block.empty() && block.back() == '\n') block.pop_back();
  EXPECT_EQ(block, keys) << "update sft/README.md's config block from `posttrain sft --help`";
}

}  // namespace
}  // namespace posttrain::sft
