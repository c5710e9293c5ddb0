// posttrain: one executable, one subcommand per stage. This file only dispatches; each
// command lives in app/commands/ (no LibTorch) or app/model_commands/ (LibTorch).
#include <cstring>
#include <exception>
#include <iostream>
#include <ostream>
#include <string>
#include <vector>

#include "app/command.h"
#include "common/allocator.h"
#include "common/error.h"

namespace posttrain::app {

std::map<std::string, Command>& command_table() {
  static std::map<std::string, Command> table;
  return table;
}

namespace {

// Lists the commands this binary has (a torch-free build has fewer), nothing more.
void print_help(std::ostream& out) {
  out << "posttrain: the Llama 3 post-training loop from one binary.\n\nusage: posttrain "
         "COMMAND [options]\n       posttrain COMMAND --help\n       posttrain --version\n\n"
         "commands:\n";
  for (const auto& [name, cmd] : command_table()) {
    out << "  " << name << std::string(name.size() < 12 ? 12 - name.size() : 1, ' ')
        << cmd.summary << "\n";
  }
}

// One line: exceptions from LibTorch carry a multi-line backtrace after the message.
std::string first_line(const char* what) {
  std::string s(what);
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace
}  // namespace posttrain::app

int main(int argc, char** argv) {
  using namespace posttrain::app;
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    print_help(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version") || !std::strcmp(argv[1], "version")) {
    std::cout << version_text();
    return 0;
  }
  const std::string name = argv[1];
  auto it = command_table().find(name);
  if (it == command_table().end()) {
    std::cerr << "posttrain: unknown command '" << name << "' (see posttrain --help)\n";
    return 2;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  posttrain::retain_freed_memory();
  try {
    return it->second.run(args);
  } catch (const posttrain::UsageError& e) {
    std::cerr << "posttrain " << name << ": " << first_line(e.what()) << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "posttrain " << name << ": error: " << first_line(e.what()) << "\n";
    return 1;
  }
}
