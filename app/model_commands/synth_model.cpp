// `synth --model DIR`: the attempts of synthetic self-correction written by a causal LM through
// the batched engine (core/generate). Each round's dialogues (the problem, then earlier
// attempts with the checker's feedback as user turns) are rendered with the chat template and
// the assistant header opened, as `generate` renders a messages row, and all go through the
// engine at once. Problem p's attempt k is sampled with seed sample_seed(sample_seed(S, p), k)
// (recorded as generation.seed): `generate` with that row seed and --samples 1 writes the same
// text, and the engine's samples depend on their seed only, so a rerun is identical.
#include "app/synth_model.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/generate/engine.h"
#include "core/generate/sampler.h"
#include "core/generate/stop_tokens.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"

namespace posttrain::app {
namespace {

using nlohmann::json;
namespace gen = core::generate;

// Everything one run of the model needs, shared by the rounds (the generator is copied into
// std::function, so it holds this through a shared_ptr).
struct ModelState {
  core::LlamaConfig config;
  std::optional<core::Tokenizer> tok;
  core::ChatFormat format = core::ChatFormat::kLlama3;
  core::LlamaModel model{nullptr};
  std::unique_ptr<gen::Engine> engine;
  gen::SamplingParams params;
  uint64_t seed = 0;
};

void check_settings(const SynthModelSettings& s) {
  if (s.device != "cpu" && s.device != "cuda") throw UsageError("--device must be cpu or cuda");
  if (s.device == "cuda" && !at::hasCUDA()) throw UsageError("--device cuda: no CUDA device");
  if (s.dtype != "float32" && s.dtype != "bfloat16") {
    throw UsageError("--dtype must be float32 or bfloat16");
  }
  if (s.kv_cache_mb < 1) throw UsageError("--kv-cache-mb must be positive");
}

std::shared_ptr<ModelState> load(const SynthModelSettings& s) {
  check_settings(s);
  auto st = std::make_shared<ModelState>();
  st->config = core::load_config(s.model_dir);
  if (st->config.kind == core::ModelKind::kRewardModel) {
    throw UsageError(s.model_dir + " is a reward model; synth --model needs a causal LM");
  }
  if (!std::filesystem::exists(s.model_dir + "/tokenizer.json")) {
    throw UsageError("synth --model: " + s.model_dir +
                     " has no tokenizer.json (the prompts are chat messages)");
  }
  st->tok = core::Tokenizer::load_dir(s.model_dir);
  st->format = s.chat_template ? core::parse_chat_format(*s.chat_template) : st->tok->chat_format();
  auto& p = st->params;
  p.temperature = s.temperature;
  p.top_p = s.top_p;
  p.top_k = s.top_k;
  p.min_p = s.min_p;
  p.max_new_tokens = s.max_new_tokens;
  try {
    gen::validate(p);
  } catch (const UsageError& e) {
    throw UsageError(std::string("invalid sampling option: ") + e.what());
  }
  p.stop_token_ids = gen::model_stop_token_ids(s.model_dir, st->config);
  st->seed = s.seed;
  const at::Device device(s.device == "cuda" ? at::kCUDA : at::kCPU);
  st->model =
      core::load_model(s.model_dir, device, s.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat);
  st->model->eval();
  gen::EngineOptions opts;
  opts.kv_cache_bytes = s.kv_cache_mb << 20;
  gen::Detokenizer detok = [t = *st->tok](const std::vector<int64_t>& ids) {
    return t.decode(ids);
  };
  st->engine = std::make_unique<gen::Engine>(*st->model, opts, detok);
  return st;
}

// One round: attempt `attempt` of each dialogue's problem, batched through the engine.
std::vector<std::optional<synthetic::GeneratedAttempt>> generate_round(
    ModelState& st, const std::vector<json>& dialogues, const std::vector<int64_t>& problems,
    int attempt) {
  std::vector<gen::GenerationRequest> requests;
  std::vector<size_t> request_of;  // dialogue j -> its request, or npos (no room in context)
  std::vector<uint64_t> seeds;
  const size_t none = static_cast<size_t>(-1);
  for (size_t j = 0; j < dialogues.size(); ++j) {
    const uint64_t seed = gen::sample_seed(gen::sample_seed(st.seed, problems[j]), attempt);
    seeds.push_back(seed);
    auto messages = core::parse_messages(dialogues[j], Location{"synth", 0, "messages"});
    gen::GenerationRequest r;
    r.prompt = core::render_chat(*st.tok, messages, st.format, true).ids;
    if (static_cast<int64_t>(r.prompt.size()) >= st.config.max_position_embeddings) {
      request_of.push_back(none);
      continue;
    }
    r.seeds = {gen::sample_seed(seed, 0)};  // as `generate` seeds sample 0 of a row seed
    r.params = st.params;
    st.engine->check(r);
    request_of.push_back(requests.size());
    requests.push_back(std::move(r));
  }
  const auto start = std::chrono::steady_clock::now();
  auto samples = st.engine->generate(requests);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<std::optional<synthetic::GeneratedAttempt>> out(dialogues.size());
  int64_t tokens = 0;
  for (size_t j = 0; j < dialogues.size(); ++j) {
    if (request_of[j] == none) continue;
    const gen::GeneratedSample& s = samples[request_of[j]].at(0);
    tokens += static_cast<int64_t>(s.output_ids.size());
    out[j] =
        synthetic::GeneratedAttempt{s.text,
                                    {{"seed", seeds[j]},
                                     {"tokens", s.output_ids.size()},
                                     {"prompt_tokens", requests[request_of[j]].prompt.size()},
                                     {"finish_reason", gen::finish_reason_name(s.finish_reason)},
                                     {"logprob", s.logprob}}};
  }
  std::cerr << "synth --model: attempt " << attempt + 1 << ": " << requests.size() << " dialogues, "
            << tokens << " new tokens in " << seconds << " s\n";
  return out;
}

synthetic::ModelSource make_source(const SynthModelSettings& settings) {
  std::shared_ptr<ModelState> st = load(settings);
  synthetic::ModelSource source;
  source.checkpoint = settings.model_dir;
  source.sampling = settings.sampling_json();
  source.generate = [st](const std::vector<json>& dialogues, const std::vector<int64_t>& problems,
                         int attempt) { return generate_round(*st, dialogues, problems, attempt); };
  return source;
}

SynthModelRegistrar registrar(make_source);

}  // namespace
}  // namespace posttrain::app
