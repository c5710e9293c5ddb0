// `posttrain sample` configs: the policy, an optional reward model, the prompts, the sampling
// settings, the ranking rule, the verifiers' sandbox limits, the output store/round/folder and
// the decode engine's sizes. One schema (sample_schema) documents and validates every key;
// sample_options turns the resolved JSON into the options the runner takes.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/generate/engine.h"
#include "core/generate/sampling_params.h"
#include "core/train/config.h"
#include "rejection_sampling/ranking.h"

namespace posttrain::rejection_sampling {

core::ConfigSchema sample_schema();

struct VerifierOptions {
  double timeout_seconds = 2.0;  // sandbox wall clock per code run
  int64_t memory_mb = 512;
  int workers = 2;          // code/tool candidates checked in parallel (math runs inline)
  bool check_steps = true;  // math: a wrong shown equation fails the candidate
  bool require_tool_use = false;
  std::string docs_dir;  // tool lookups; "" = the built-in documents
};

struct SampleOptions {
  std::string model_dir;
  std::string chat_format = "auto";  // auto | llama3 | chatml
  std::string device = "cpu";
  std::string dtype = "float32";
  std::string reward_model_dir;  // "" = none
  int64_t reward_batch_size = 8;

  std::string prompts_path;   // JSONL; "" = none
  std::string prompts_store;  // store whose synthetic problems are read; "" = none
  int prompts_store_round = 0;
  int64_t prompts_limit = 0;  // 0 = all

  int64_t samples = 10;  // K
  uint64_t seed = 0;
  core::generate::SamplingParams sampling;  // stop_token_ids filled from the model later
  std::vector<std::string> system_prompts;

  RankingRule ranking;
  VerifierOptions verifier;

  std::string store;  // output store
  int round = 0;
  std::string out_dir;

  core::generate::EngineOptions engine;
  int64_t chunk_prompts = 256;  // prompts handed to the engine at once (and buffered)
};

// Throws InputError naming the key for settings that contradict each other (e.g. a ranking by
// reward without reward_model.path, no prompt source).
SampleOptions sample_options(const nlohmann::json& resolved);

}  // namespace posttrain::rejection_sampling
