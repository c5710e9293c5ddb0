// Subcommand registry. Each app/commands/*.cpp (and app/model_commands/*.cpp, built only with
// LibTorch) registers itself with POSTTRAIN_COMMAND; main() dispatches on the first argument.
// The files are compiled straight into the executable, so their static registrars always run.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace posttrain::app {

// args: what followed the command name on the command line. Returns the exit status.
using CommandFn = std::function<int(const std::vector<std::string>& args)>;

struct Command {
  std::string summary;  // one line for `posttrain --help`
  CommandFn run;
};

std::map<std::string, Command>& command_table();

struct CommandRegistrar {
  CommandRegistrar(const std::string& name, const std::string& summary, CommandFn run) {
    command_table()[name] = Command{summary, std::move(run)};
  }
};

// `posttrain --version`: "posttrain VERSION (commit C)" then one line per registered source
// (app/model_commands/torch_version.cpp adds LibTorch's version and the CUDA it sees).
std::vector<std::function<std::string()>>& version_lines();
struct VersionLine {
  explicit VersionLine(std::function<std::string()> line) {
    version_lines().push_back(std::move(line));
  }
};
std::string version_text();

}  // namespace posttrain::app

#define POSTTRAIN_CONCAT_INNER(a, b) a##b
#define POSTTRAIN_CONCAT(a, b) POSTTRAIN_CONCAT_INNER(a, b)
// POSTTRAIN_COMMAND("name", "summary", function taking const std::vector<std::string>&)
#define POSTTRAIN_COMMAND(name, summary, fn)                                       \
  static ::posttrain::app::CommandRegistrar POSTTRAIN_CONCAT(posttrain_command_,  \
                                                             __LINE__)(name, summary, fn)
