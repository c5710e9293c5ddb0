// Helpers for the datastore tests: a scratch directory removed at the end of each test, file
// writing/reading, and running the posttrain CLI with its exit status and output captured.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace posttrain::datastore::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/posttrain_ds_XXXXXX";
    char* p = mkdtemp(tmpl);
    if (!p) std::abort();
    path_ = p;
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(f, line)) lines.push_back(line);
  return lines;
}

struct CliResult {
  int status = -1;  // exit status
  std::string out, err;
};

// Runs `posttrain ARGS` (ARGS already shell-quoted where needed).
inline CliResult run_cli(const std::string& args, const std::string& scratch) {
  std::string out = scratch + "/.cli_out", err = scratch + "/.cli_err";
  std::string cmd =
      std::string("'") + POSTTRAIN_BIN + "' " + args + " >'" + out + "' 2>'" + err + "'";
  int rc = std::system(cmd.c_str());
  CliResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

}  // namespace posttrain::datastore::testing
