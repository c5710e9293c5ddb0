// `posttrain --version`: version, commit, then what each part of this build adds (LibTorch's
// version and the CUDA it sees come from app/model_commands/torch_version.cpp, built with torch).
#include <sstream>

#include "app/command.h"
#include "posttrain_commit.h"

namespace posttrain::app {

std::vector<std::function<std::string()>>& version_lines() {
  static std::vector<std::function<std::string()>> lines;
  return lines;
}

std::string version_text() {
  std::ostringstream out;
  out << "posttrain " << POSTTRAIN_VERSION << " (commit " << POSTTRAIN_COMMIT << ")\n";
  if (version_lines().empty()) out << "LibTorch: not in this build (POSTTRAIN_WITH_TORCH=OFF)\n";
  for (const auto& line : version_lines()) out << line() << "\n";
  return out.str();
}

}  // namespace posttrain::app
