// The batched decoder: requests (a prompt, K per-sample seeds, sampling settings) in, K samples
// per request out, each with its tokens, their log-probs under the model, and why it stopped.
// One prompt is prefilled once and its K samples share its cache pages (page_table.h); the
// scheduler (scheduler.h) mixes prefill chunks with decode steps and refills finished slots;
// the sampler (sampler.h) draws from per-sample counter-based streams, so a sample's tokens
// depend on its seed only, never on what else shares the batch (exactly on CPU float32).
// Used by `posttrain generate`, rejection sampling, synthetic data and evaluation.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/generate/sampling_params.h"
#include "core/model/llama.h"

namespace posttrain::core::generate {

struct GenerationRequest {
  std::vector<int64_t> prompt;  // token ids, used as given (no BOS added)
  std::vector<uint64_t> seeds;  // one per sample: K = seeds.size() (sample_seed() makes them)
  SamplingParams params;
};

enum class FinishReason { kStop, kLength };
const char* finish_reason_name(FinishReason r);  // "stop" | "length"

struct GeneratedSample {
  std::vector<int64_t> output_ids;     // a final stop token id included
  std::vector<double> token_logprobs;  // one per output id, temperature 1, no truncation
  double logprob = 0;                  // their sum
  FinishReason finish_reason = FinishReason::kLength;
  std::string stop_string;  // the stop string that ended it; empty otherwise
  // With a detokenizer: the output's text without a final stop token and cut before a
  // matched stop string.
  std::string text;
  uint64_t seed = 0;
};

// Token ids -> text (Tokenizer::decode); needed for stop strings and sample text.
using Detokenizer = std::function<std::string(const std::vector<int64_t>&)>;

struct EngineOptions {
  int64_t page_size = 16;                       // tokens per KV page
  int64_t num_pages = 0;                        // pool size; 0 = what kv_cache_bytes holds
  int64_t kv_cache_bytes = int64_t{512} << 20;  // keys + values, all layers
  int64_t max_batch_tokens = 2048;              // tokens per forward step
  int64_t max_running = 256;                    // sequences decoding at once
  bool share_prefix = true;  // false: each sample prefills its own copy of the prompt
};

struct EngineStats {
  int64_t steps = 0;
  int64_t prefill_tokens = 0;    // prompt tokens run through the model
  int64_t generated_tokens = 0;  // sampled tokens
  int64_t finished_samples = 0;
  int64_t peak_pages = 0;  // most pages in use at once
  double seconds = 0;      // wall time inside run()
};

class Engine {
 public:
  // The model must outlive the engine and stay unchanged while it runs. Allocates the cache.
  Engine(LlamaModelImpl& model, EngineOptions options, Detokenizer detokenize = {});
  ~Engine();

  // Throws UsageError naming the problem when the request cannot run: no samples, an empty
  // prompt, an id outside the vocabulary, a prompt filling the context, invalid settings, stop
  // strings without a detokenizer, or a worst case larger than the whole page pool.
  void check(const GenerationRequest& request) const;

  using DoneFn = std::function<void(size_t request, std::vector<GeneratedSample> samples)>;
  using StepFn = std::function<void(const EngineStats& stats)>;
  // Runs every request to completion (check()s them first). on_done fires once per request as
  // its last sample finishes (completion order); on_step after every step.
  void run(const std::vector<GenerationRequest>& requests, const DoneFn& on_done,
           const StepFn& on_step = {});
  // run() collecting the samples by request.
  std::vector<std::vector<GeneratedSample>> generate(
      const std::vector<GenerationRequest>& requests);

  const EngineStats& stats() const;
  int64_t num_pages() const;
  int64_t page_size() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace posttrain::core::generate
