// The seam between `synth` (app/commands/synth.cpp, torch-free) and the decode engine: synth
// parses the model flags into SynthModelSettings; app/model_commands/synth_model.cpp, built
// only with LibTorch, registers the factory that turns them into a synthetic::ModelSource.
// A torch-free build has no factory, and `synth --model` says so.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "synthetic/pipeline.h"

namespace posttrain::app {

struct SynthModelSettings {
  std::string model_dir;
  std::string device = "cpu";                // cpu | cuda
  std::string dtype = "float32";             // float32 | bfloat16
  std::optional<std::string> chat_template;  // llama3 | chatml; default: the tokenizer's
  double temperature = 1.0;                  // 0 = greedy
  double top_p = 1.0;
  int64_t top_k = 0;  // 0 = off
  double min_p = 0.0;
  int64_t max_new_tokens = 512;  // per attempt
  uint64_t seed = 0;             // --sample-seed (default --seed); problem p's attempt k:
                                 // sample_seed(sample_seed(seed, p), k)
  int64_t kv_cache_mb = 1024;    // the engine's page pool

  // What the store records as responses.sampling (everything that changes the samples).
  nlohmann::json sampling_json() const;
};

using SynthModelFactory = std::function<synthetic::ModelSource(const SynthModelSettings&)>;

// Empty unless a LibTorch build registered one.
SynthModelFactory& synth_model_factory();

struct SynthModelRegistrar {
  explicit SynthModelRegistrar(SynthModelFactory f) { synth_model_factory() = std::move(f); }
};

}  // namespace posttrain::app
