// posttrain verify --kind math|code|tool: scores given responses with the synthetic checkers
// (the same ones rejection sampling uses), one output line per input line.
#include <cmath>
#include <iostream>

#include "app/command.h"
#include "app/options.h"
#include "synthetic/pipeline.h"

namespace posttrain::app {
namespace {

const char kUsage[] =
    "usage: posttrain verify --kind math|code|tool --input IN.jsonl --output OUT.jsonl\n\n"
    "Input lines: {\"id\", \"prompt\", \"response\", and \"answer\" (math) | \"tests\" (code: "
    "assert source or a list of asserts) | \"tools\" (tool use: tool names; optional "
    "\"answer\")}. Each output line repeats the input and adds \"passed\", \"verdict\" "
    "(pass/fail/error/timeout/limit), \"feedback\" and \"details\".";

int run_verify_command(const std::vector<std::string>& args) {
  po::options_description desc("verify options");
  // clang-format off
  desc.add_options()
      ("kind", po::value<std::string>(), "math, code or tool")
      ("input", po::value<std::string>(), "JSONL of responses to check")
      ("workers", po::value<int>()->default_value(2), "parallel checks (sandbox workers)")
      ("timeout", po::value<double>()->default_value(2.0), "sandbox wall-clock seconds per run")
      ("memory-mb", po::value<int64_t>()->default_value(512), "sandbox address-space limit")
      ("docs", po::value<std::string>(), "tool: lookup over the .txt/.md files of this folder")
      ("no-step-check", "math: do not fail answers whose shown equations are wrong")
      ("require-tool-use", "tool: fail answers that used no tool successfully");
  // clang-format on
  add_output_option(desc, "JSONL with passed/verdict/feedback added");
  po::variables_map vm;
  if (!parse_options(kUsage, desc, args, &vm)) return 0;
  if (!vm.count("kind")) throw UsageError("verify: --kind is required (math, code or tool)");
  if (!vm.count("input")) throw UsageError("verify: --input is required");
  std::string output = require_output(vm, "verify");
  synthetic::VerifyOptions o;
  o.kind = synthetic::parse_kind(vm["kind"].as<std::string>());
  o.workers = vm["workers"].as<int>();
  if (o.workers < 1 || o.workers > 64) throw UsageError("--workers must be in [1, 64]");
  double timeout = vm["timeout"].as<double>();
  if (!(timeout > 0 && timeout <= 600)) throw UsageError("--timeout must be in (0, 600] seconds");
  o.sandbox.limits.wall_seconds = timeout;
  o.sandbox.limits.cpu_seconds = static_cast<int>(std::ceil(timeout));
  o.sandbox.limits.memory_bytes = synthetic::sandbox_memory_bytes(vm["memory-mb"].as<int64_t>());
  if (vm.count("docs")) o.docs_dir = vm["docs"].as<std::string>();
  o.check_steps = !vm.count("no-step-check");
  o.require_tool_use = vm.count("require-tool-use") > 0;
  auto [lines, passed] = synthetic::run_verify(o, vm["input"].as<std::string>(), output);
  std::cerr << "{\"lines\": " << lines << ", \"passed\": " << passed << "}\n"
            << "verify " << synthetic::kind_name(o.kind) << ": " << passed << " of " << lines
            << " passed\n";
  return 0;
}

}  // namespace
}  // namespace posttrain::app

POSTTRAIN_COMMAND("verify", "check math/code/tool responses (verdict, feedback per line)",
                  posttrain::app::run_verify_command);
