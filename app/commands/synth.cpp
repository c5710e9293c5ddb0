// posttrain synth math|code|tool: synthetic problems, and given candidates (or attempts a model
// writes, through app/synth_model.h), checked dialogues with their feedback trail
// (self-correction), filtered, to JSONL and/or the store.
#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>
#include <nlohmann/json.hpp>

#include "app/command.h"
#include "app/options.h"
#include "app/synth_model.h"
#include "common/jsonl.h"
#include "synthetic/math_problems.h"
#include "synthetic/pipeline.h"

namespace posttrain::app {

SynthModelFactory& synth_model_factory() {
  static SynthModelFactory factory;
  return factory;
}

nlohmann::json SynthModelSettings::sampling_json() const {
  return {{"temperature", temperature}, {"top_p", top_p},   {"top_k", top_k},
          {"min_p", min_p},             {"seed", seed},     {"max_new_tokens", max_new_tokens},
          {"dtype", dtype},             {"device", device}, {"chat_template", chat_template
                                                                   ? nlohmann::json(*chat_template)
                                                                   : nlohmann::json()}};
}

namespace {

const char kUsage[] =
    "usage: posttrain synth math|code|tool --count N [--seed S] [--difficulty LEVEL] [--family F]\n"
    "         [--candidates FILE | --reference | --model DIR] (--output FILE.jsonl | --store DB)\n\n"
    "Without candidates: writes the problems. With --candidates (JSONL lines {\"id\", "
    "\"attempts\": [...]}, ids as in the problems of the same --seed/--count/--difficulty), "
    "checks attempt 1, feeds the checker's feedback back and checks the next attempt, up to "
    "--max-attempts; keeps a dialogue only when it ends correct (failed attempts carry weight 0). "
    "With --model DIR (LibTorch builds): the model writes each attempt through the batched "
    "engine, attempt 1 from the problem, each next one from the dialogue with the checker's "
    "feedback as the last user turn; same --seed, same attempts.";

// Sandbox limits from the flags: CPU time follows the wall-clock timeout.
synthetic::SandboxOptions sandbox_options(const po::variables_map& vm) {
  synthetic::SandboxOptions s;
  double timeout = vm["timeout"].as<double>();
  if (!(timeout > 0 && timeout <= 600)) throw UsageError("--timeout must be in (0, 600] seconds");
  s.limits.wall_seconds = timeout;
  s.limits.cpu_seconds = static_cast<int>(std::ceil(timeout));
  s.limits.memory_bytes = synthetic::sandbox_memory_bytes(vm["memory-mb"].as<int64_t>());
  return s;
}

SynthModelSettings model_settings(const po::variables_map& vm) {
  SynthModelSettings s;
  s.model_dir = vm["model"].as<std::string>();
  s.device = vm["device"].as<std::string>();
  s.dtype = vm["dtype"].as<std::string>();
  if (vm.count("chat-template")) s.chat_template = vm["chat-template"].as<std::string>();
  s.temperature = vm["temperature"].as<double>();
  s.top_p = vm["top-p"].as<double>();
  s.top_k = vm["top-k"].as<int64_t>();
  s.min_p = vm["min-p"].as<double>();
  s.max_new_tokens = vm["max-new-tokens"].as<int64_t>();
  s.seed = vm.count("sample-seed") ? vm["sample-seed"].as<uint64_t>() : vm["seed"].as<uint64_t>();
  s.kv_cache_mb = vm["kv-cache-mb"].as<int64_t>();
  return s;
}

void print_summary(const std::string& kind, const synthetic::SynthResult& r, bool checked) {
  if (!checked) {
    std::cerr << "synth " << kind << ": " << r.items.size() << " problems\n";
    return;
  }
  nlohmann::json j = r.summary();
  std::cerr << j.dump() << "\n";
  auto pct = [](double x) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(1) << 100 * x << "%";
    return s.str();
  };
  std::cerr << "synth " << kind << ": " << r.items.size() << " problems, " << r.stats.problems
            << " with candidates; correct at first try " << r.stats.first_try << " ("
            << pct(j["share_correct_first_try"].get<double>()) << "), fixed by feedback "
            << r.stats.fixed << " (" << pct(j["share_fixed_by_feedback"].get<double>())
            << "), never correct " << r.stats.failed << "; kept " << r.kept << "\n";
}

int run_synth_command(const std::vector<std::string>& args) {
  po::options_description desc("synth options");
  // clang-format off
  desc.add_options()
      ("kind", po::value<std::string>(), "math, code or tool")
      ("count", po::value<int64_t>(), "number of problems (code --problems: at most this many)")
      ("seed", po::value<uint64_t>()->default_value(0),
       "the same seed gives the same problems (and with --model the same attempts)")
      ("sample-seed", po::value<uint64_t>(), "--model: sampling seed (default: --seed)")
      ("difficulty", po::value<std::string>()->default_value("mixed"),
       "easy, medium, hard or mixed")
      ("family", po::value<std::vector<std::string>>()->composing(),
       "math/tool: only these families (repeatable or comma-separated; math: arithmetic, "
       "shopping, sharing, speed, discount, and addition (never drawn unless named); tool: calc, "
       "lookup, lookup_calc, python)")
      ("split", po::value<std::string>()->default_value("all"),
       "math/tool: all, or one side of a fixed split of the problem space by prompt text (1 in "
       "10 held out): train for training data, heldout for evaluation, never overlapping")
      ("candidates", po::value<std::string>(), "JSONL of {\"id\", \"attempts\": [...]} to check")
      ("reference", "check each problem's own reference solution as its candidate (math; tool "
       "calc): verified seed data for SFT")
      ("model", po::value<std::string>(), "write the attempts with this model (LibTorch builds)")
      ("temperature", po::value<double>()->default_value(1.0), "--model: 0 = greedy")
      ("top-p", po::value<double>()->default_value(1.0), "--model: nucleus mass in (0, 1]")
      ("top-k", po::value<int64_t>()->default_value(0), "--model: keep the k most likely (0 = off)")
      ("min-p", po::value<double>()->default_value(0.0), "--model: drop tokens below min-p x top")
      ("max-new-tokens", po::value<int64_t>()->default_value(512), "--model: tokens per attempt")
      ("device", po::value<std::string>()->default_value("cpu"), "--model: cpu|cuda")
      ("dtype", po::value<std::string>()->default_value("float32"), "--model: float32|bfloat16")
      ("chat-template", po::value<std::string>(), "--model: llama3|chatml (default: tokenizer's)")
      ("kv-cache-mb", po::value<int64_t>()->default_value(1024), "--model: KV-cache pool in MiB")
      ("store", po::value<std::string>(), "also write problems, attempts and kept dialogues here")
      ("round", po::value<int>()->default_value(0), "round recorded in the store")
      ("source", po::value<std::string>(), "source name in the store (default synth-KIND)")
      ("max-attempts", po::value<int>()->default_value(3), "attempts per problem (self-correction)")
      ("workers", po::value<int>()->default_value(2), "parallel checks (sandbox workers)")
      ("timeout", po::value<double>()->default_value(2.0), "sandbox wall-clock seconds per run")
      ("memory-mb", po::value<int64_t>()->default_value(512), "sandbox address-space limit")
      ("problems", po::value<std::string>(), "code: read problems from this JSONL")
      ("docs", po::value<std::string>(), "tool: lookup over the .txt/.md files of this folder")
      ("near-dup", po::value<double>()->default_value(0.9),
       "drop kept responses at least this similar (MinHash) to an earlier one; 0 disables")
      ("min-chars", po::value<int64_t>()->default_value(1), "shortest kept response")
      ("max-chars", po::value<int64_t>()->default_value(20000), "longest kept response")
      ("no-step-check", "math: do not fail answers whose shown equations are wrong")
      ("allow-no-tool", "tool: accept a correct answer that used no tool");
  // clang-format on
  add_output_option(desc, "write problems / checked dialogues as JSONL here");
  po::variables_map vm;
  if (!parse_options(kUsage, desc, args, &vm, {{"kind", 1}})) return 0;
  if (!vm.count("kind")) throw UsageError("give a kind: posttrain synth math|code|tool ...");
  synthetic::SynthOptions o;
  o.kind = synthetic::parse_kind(vm["kind"].as<std::string>());
  std::string kind = synthetic::kind_name(o.kind);
  if (vm.count("model") && vm.count("candidates")) {
    throw UsageError("give --candidates FILE or --model DIR, not both");
  }
  for (const char* flag : {"temperature", "top-p", "top-k", "min-p", "max-new-tokens", "device",
                           "dtype", "chat-template", "kv-cache-mb", "sample-seed"}) {
    if (vm.count(flag) && !vm[flag].defaulted() && !vm.count("model")) {
      throw UsageError(std::string("--") + flag + " is for --model");
    }
  }
  if (vm.count("model") && !synth_model_factory()) {
    throw UsageError(
        "--model needs the decode engine, and this posttrain was built without LibTorch "
        "(POSTTRAIN_WITH_TORCH=OFF); use a LibTorch build, or pass attempts with "
        "--candidates FILE");
  }
  auto output = output_path(vm);
  if (!output && !vm.count("store"))
    throw UsageError("synth: give --output FILE.jsonl or --store DB");
  if (vm.count("count"))
    o.count = vm["count"].as<int64_t>();
  else if (!vm.count("problems"))
    throw UsageError("synth: --count is required");
  if (vm.count("count") && (o.count < 1 || o.count > 1000000)) {
    throw UsageError("--count must be in [1, 1000000]");
  }
  o.seed = vm["seed"].as<uint64_t>();
  o.difficulty = synthetic::parse_difficulty(vm["difficulty"].as<std::string>());
  if (vm.count("candidates")) o.candidates = vm["candidates"].as<std::string>();
  o.reference = vm.count("reference") > 0;
  o.filter.split = synthetic::parse_split(vm["split"].as<std::string>());
  if (vm.count("family")) {
    for (const auto& given : vm["family"].as<std::vector<std::string>>()) {
      size_t start = 0;
      while (start <= given.size()) {
        size_t comma = given.find(',', start);
        if (comma == std::string::npos) comma = given.size();
        if (comma > start) o.filter.families.push_back(given.substr(start, comma - start));
        start = comma + 1;
      }
    }
  }
  if (vm.count("problems")) {
    if (o.kind != synthetic::Kind::kCode) throw UsageError("--problems is for synth code");
    o.problems_file = vm["problems"].as<std::string>();
  }
  if (vm.count("docs")) {
    if (o.kind != synthetic::Kind::kTool) throw UsageError("--docs is for synth tool");
    o.docs_dir = vm["docs"].as<std::string>();
  }
  o.max_attempts = vm["max-attempts"].as<int>();
  o.workers = vm["workers"].as<int>();
  if (o.workers < 1 || o.workers > 64) throw UsageError("--workers must be in [1, 64]");
  o.near_dup_threshold = vm["near-dup"].as<double>();
  o.length.min_chars = vm["min-chars"].as<int64_t>();
  o.length.max_chars = vm["max-chars"].as<int64_t>();
  o.check_steps = !vm.count("no-step-check");
  o.require_tool_use = !vm.count("allow-no-tool");
  o.sandbox = sandbox_options(vm);
  if (vm.count("model")) o.model = synth_model_factory()(model_settings(vm));

  synthetic::SynthResult result = synthetic::run_synth(o);
  if (output) {
    JsonlWriter writer(*output);
    for (const auto& item : result.items) writer.write(item.output_line());
    writer.close();
  }
  if (vm.count("store")) {
    std::string source = vm.count("source") ? vm["source"].as<std::string>() : "synth-" + kind;
    synthetic::write_store(result, vm["store"].as<std::string>(), o.kind, vm["round"].as<int>(),
                           source);
  }
  print_summary(kind, result, o.candidates.has_value() || o.model.has_value() || o.reference);
  return 0;
}

}  // namespace
}  // namespace posttrain::app

POSTTRAIN_COMMAND("synth", "synthetic math/code/tool problems; check candidates with feedback",
                  posttrain::app::run_synth_command);
