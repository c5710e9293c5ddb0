// The synth and verify stages as library calls (the CLI in app/commands/ only parses flags):
// make problems, check given candidates with self-correction, filter the kept dialogues, and
// write JSONL and/or the store; or score given responses with the same checkers.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
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

// One attempt a model wrote, and how ({"seed", "tokens", "finish_reason"}: recorded with it).
struct GeneratedAttempt {
  std::string text;
  nlohmann::json generation;
};

// Writes attempt number `attempt` (0-based) of several problems in one batch: dialogues[j] is
// the messages so far of problem problems[j] (its index in the run), ending with a user turn.
// Returns one entry per dialogue, in order; std::nullopt where the dialogue no longer fits the
// model's context (that problem's chain stops there).
using AttemptGenerator = std::function<std::vector<std::optional<GeneratedAttempt>>(
    const std::vector<nlohmann::json>& dialogues, const std::vector<int64_t>& problems,
    int attempt)>;

// Attempts from a model instead of a candidates file (app/model_commands/synth_model.cpp makes
// one with the decode engine; synthetic/ itself stays torch-free).
struct ModelSource {
  AttemptGenerator generate;
  std::string checkpoint;   // model folder: the store's checkpoints row of every response
  nlohmann::json sampling;  // sampling settings: the store's responses.sampling
};

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
  std::optional<ModelSource> model;          // or attempts generated round by round
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
  std::optional<ModelSource> model;          // set when a model wrote the attempts
  int64_t out_of_context = 0;  // model chains stopped because the dialogue filled the context
  nlohmann::json summary() const;
};

// Generates the problems and, given candidates, checks them (in parallel on `workers`). With a
// model: round k asks it for attempt k of every problem whose attempt k-1 failed (all at once,
// one generate() call per round), then checks them, up to max_attempts.
SynthResult run_synth(const SynthOptions& options);

// Writes problems, every attempt (candidate, verdict, feedback, 0-based attempt number) and the
// kept dialogues to the store at `db`, in one transaction; each kept dialogue is selected as
// SFT data of `round` (what `sft` with data.store_round reads). Model-written attempts are also
// responses (prompt: the dialogue it answered; checkpoint: the model folder; sampling).
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
