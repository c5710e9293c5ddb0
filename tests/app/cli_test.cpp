// The executable's contract: every command answers --help, unknown commands and bad flags
// give one line on stderr and a non-zero exit, never a crash.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <string>
#include <vector>
#include <sys/wait.h>

namespace {

struct CliRun {
  int status;
  std::string output;  // stdout and stderr together
};

CliRun run(const std::string& args) {
  std::string cmd = std::string(POSTTRAIN_BIN) + " " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out};
}

std::vector<std::string> listed_commands(const std::string& help) {
  std::vector<std::string> names;
  auto pos = help.find("commands:\n");
  if (pos == std::string::npos) return names;
  size_t i = pos + 10;
  while (i < help.size()) {
    auto end = help.find('\n', i);
    std::string line = help.substr(i, end - i);
    if (line.rfind("  ", 0) == 0) {
      auto name_end = line.find(' ', 2);
      names.push_back(line.substr(2, name_end - 2));
    }
    if (end == std::string::npos) break;
    i = end + 1;
  }
  return names;
}

TEST(Cli, HelpListsCommandsAndEachAnswersHelp) {
  CliRun help = run("--help");
  EXPECT_EQ(help.status, 0);
  auto names = listed_commands(help.output);
  ASSERT_FALSE(names.empty()) << help.output;
  for (const auto& name : names) {
    CliRun r = run(name + " --help");
    EXPECT_EQ(r.status, 0) << name << ": " << r.output;
    EXPECT_NE(r.output.find("--"), std::string::npos) << name << " --help lists no options";
  }
}

// The help's header promises nothing the command list lacks (it once named DPO and reward
// models, which had no commands).
TEST(Cli, HelpNamesOnlyWhatExists) {
  CliRun help = run("--help");
  const std::string header = help.output.substr(0, help.output.find("commands:"));
  for (const char* stage : {"DPO", "reward", "rejection sampling"}) {
    EXPECT_EQ(header.find(stage), std::string::npos) << header;
  }
  CliRun bare = run("");
  EXPECT_EQ(bare.status, 2);
  EXPECT_EQ(listed_commands(bare.output), listed_commands(help.output));
}

// --version: version and commit, then LibTorch's version and the CUDA it sees (or that this
// build has no LibTorch).
TEST(Cli, VersionNamesCommitAndLibTorch) {
  CliRun r = run("--version");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.output.rfind("posttrain 0.1.0 (commit ", 0), 0u) << r.output;
  const bool torch = r.output.find("\nLibTorch 2.") != std::string::npos;
  const bool no_torch = r.output.find("\nLibTorch: not in this build") != std::string::npos;
  EXPECT_TRUE(torch != no_torch) << r.output;
  if (torch) EXPECT_NE(r.output.find(", CUDA "), std::string::npos) << r.output;
}

TEST(Cli, UnknownCommandIsOneLineError) {
  CliRun r = run("no-such-command");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
}

TEST(Cli, UnknownFlagIsOneLineUsageError) {
  CliRun help = run("--help");
  for (const auto& name : listed_commands(help.output)) {
    CliRun r = run(name + " --definitely-not-a-flag");
    EXPECT_NE(r.status, 0) << name;
    EXPECT_LT(r.status, 128) << name << " crashed: " << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << name << ": " << r.output;
  }
}

}  // namespace
