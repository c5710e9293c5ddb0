// Helpers for the DPO tests: a scratch folder removed at the end of each test.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace posttrain::dpo::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/posttrain_dpo_XXXXXX";
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

}  // namespace posttrain::dpo::testing
