// Boost.Program_options glue shared by every command: --help, clear one-line errors, and the
// --output/--out alias that every command writing a file accepts.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

namespace posttrain::app {

namespace po = boost::program_options;

// Adds --output (and its alias --out) to `desc`; read the value back with output_path().
void add_output_option(po::options_description& desc, const std::string& help);
// The --output/--out value, or nullopt when neither was given. Both given: UsageError.
std::optional<std::string> output_path(const po::variables_map& vm);
// The --output/--out value; UsageError naming the command when missing.
std::string require_output(const po::variables_map& vm, const std::string& command);

// Parses `args` against `desc` (plus --help). Positional arguments go to the options named in
// `positional` (the last one may repeat when max_last < 0). Returns false when --help was
// printed (the caller returns 0). Unknown or malformed options throw UsageError.
bool parse_options(const std::string& usage, po::options_description& desc,
                   const std::vector<std::string>& args, po::variables_map* vm,
                   const std::vector<std::pair<std::string, int>>& positional = {});

}  // namespace posttrain::app
