// The synth and verify stages as library calls (the CLI in app/commands/ only parses flags):
// make problems, check given candidates with self-correction, filter the kept dialogues, and
// write JSONL and/or the store; or score given responses with the same checkers.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "synthetic/draw_filter.h"
#include "synthetic/filters.h"
#include "synthetic/sandbox.h"
#include "synthetic/self_correct.h"

namespace posttrain::synthetic {

enum class Kind { kMath, kCode, kTool };
Kind parse_kind(const std::string& name);  // math | code | tool; UsageError otherwise
std::string kind_name(Kind kind);

struct SynthOptions {
  Kind kind = Kind::kMath;
  int64_t count = 0;
  uint64_t seed = 0;
  int difficulty = 0;                        // 0 mixed, 1..3
  DrawFilter filter;                         // math/tool: families and train/held-out split
  std::optional<std::string> candidates;     // JSONL {"id", "attempts": [...]}
  // Check each problem's own reference solution as its one candidate (math; tool calc), so
  // the kept dialogues are seed SFT data that went through the same checker.
  bool reference = false;
  std::optional<std::string> problems_file;  // code problems from JSONL instead of built-ins
  std::optional<std::string> docs_dir;       // lookup documents instead of the built-in set
  int max_attempts = 3;
  int workers = 2;
  bool check_steps = true;          // math: a wrong shown equation fails the attempt
  bool require_tool_use = true;     // tool: an answer needs one successful tool call
  double near_dup_threshold = 0.9;  // kept responses this similar to an earlier one are dropped
  LengthLimits length;              // on the final (passing) response
  SandboxOptions sandbox;
};

// One problem and what happened to it.
struct SynthItem {
  std::string id;
  nlohmann::json problem;  // the generator's record (id, kind, prompt, answer/tests/tools...)
  nlohmann::json checker;  // what checks it: expected answer, tests, tools
  bool has_candidates = false;
  Correction correction;
  std::string filtered;  // "" or why a passing dialogue was dropped
  bool kept() const { return correction.kept && filtered.empty(); }
  nlohmann::json output_line() const;
};

struct SynthResult {
  std::vector<SynthItem> items;
  CorrectionStats stats;
  int64_t kept = 0;
  std::map<std::string, int64_t> filtered;  // reason -> count
  nlohmann::json summary() const;
};

// Generates the problems and, given candidates, checks them (in parallel on `workers`).
SynthResult run_synth(const SynthOptions& options);

// Writes problems, every attempt (candidate, verdict, feedback, 0-based attempt number) and the
// kept dialogues to the store at `db`, in one transaction; each kept dialogue is selected as
// SFT data of `round` (what `sft` with data.store_round reads).
void write_store(const SynthResult& result, const std::string& db, Kind kind, int round,
                 const std::string& source);

struct VerifyOptions {
  Kind kind = Kind::kMath;
  int workers = 2;
  bool check_steps = true;
  bool require_tool_use = false;
  std::optional<std::string> docs_dir;
  SandboxOptions sandbox;
};

// Reads {"id", "prompt", "response", "answer" | "tests" | "tools"} lines from `input` and writes
// each line back with "passed", "verdict", "feedback" and "details" added (tool lines also get
// the executed "messages"). Returns {lines, passed}.
std::pair<int64_t, int64_t> run_verify(const VerifyOptions& options, const std::string& input,
                                       const std::string& output);

}  // namespace posttrain::synthetic
