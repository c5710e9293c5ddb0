// Runs the built `posttrain` (POSTTRAIN_BIN) with a command line through the shell and captures
// stdout and stderr together, for the CLI tests of every folder.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace posttrain::testing {

struct CliRun {
  int code = -1;       // exit status; 128 + signal number when killed by a signal
  std::string output;  // stdout and stderr together
};

inline CliRun run_cli(const std::string& args) {
  const std::string cmd = std::string(POSTTRAIN_BIN) + " " + args + " 2>&1";
  CliRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) r.output.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace posttrain::testing
