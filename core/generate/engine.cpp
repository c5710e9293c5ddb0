#include "core/generate/engine.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <unordered_map>

#include "common/error.h"
#include "core/generate/kv_cache.h"
#include "core/generate/page_allocator.h"
#include "core/generate/page_table.h"
#include "core/generate/paged_decoder.h"
#include "core/generate/sampler.h"
#include "core/generate/scheduler.h"

namespace posttrain::core::generate {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One sample being generated.
struct Seq {
  size_t request = 0;
  int64_t sample = 0;
  const SamplingParams* params = nullptr;
  PageTable table;
  std::vector<int64_t> tokens;  // prompt, then the output so far
  int64_t prompt_len = 0;
  int64_t max_len = 0;        // prompt_len + the output limit
  int64_t written = 0;        // positions whose keys and values are cached
  int64_t reserved_left = 0;  // pages of its reservation not taken yet
  size_t text_checked = 0;    // bytes of decoded output already searched for stop strings
  GeneratedSample out;
};

// One prompt prefill shared by some samples of a request.
struct Group {
  size_t request = 0;
  std::vector<int64_t> samples;
  PageTable table;
  int64_t reserved_left = 0;
};

struct RequestState {
  std::vector<GeneratedSample> samples;
  int64_t remaining = 0;
};

}  // namespace

const char* finish_reason_name(FinishReason r) {
  return r == FinishReason::kStop ? "stop" : "length";
}

struct Engine::State {
  State(LlamaModelImpl& model, EngineOptions o, Detokenizer d)
      : options(o),
        decoder(model),
        detokenize(std::move(d)),
        cache(cache_shape(model.config(), o, decoder.dtype()),
              at::TensorOptions().dtype(decoder.dtype()).device(decoder.device())),
        alloc(cache.shape().num_pages) {}

  static KvCacheShape cache_shape(const LlamaConfig& c, const EngineOptions& o,
                                  at::ScalarType dtype) {
    if (o.page_size < 1) throw UsageError("page size must be >= 1 token");
    KvCacheShape s;
    s.layers = c.num_hidden_layers;
    s.kv_heads = c.num_key_value_heads;
    s.head_dim = c.resolved_head_dim();
    s.page_size = o.page_size;
    s.num_pages = o.num_pages > 0
                      ? o.num_pages
                      : KvCache::pages_for_bytes(s, c10::elementSize(dtype), o.kv_cache_bytes);
    if (s.num_pages < 1) throw UsageError("the KV cache budget holds no page of this model");
    return s;
  }

  // Output limit of a request: its max_new_tokens, capped by the context.
  int64_t max_len(const GenerationRequest& r) const {
    const int64_t n = static_cast<int64_t>(r.prompt.size());
    return std::min(n + r.params.max_new_tokens, decoder.config().max_position_embeddings);
  }
  // Pages one sample takes past its shared prompt (it writes positions up to max_len - 2).
  int64_t child_pages(const GenerationRequest& r) const {
    return pages_to_grow(static_cast<int64_t>(r.prompt.size()), max_len(r) - 1,
                         cache.shape().page_size);
  }
  int64_t prompt_pages(const GenerationRequest& r) const {
    return ceil_div(static_cast<int64_t>(r.prompt.size()), cache.shape().page_size);
  }
  // Samples per prefill group: all K when sharing and the pool holds them, else as many as fit.
  int64_t group_size(const GenerationRequest& r) const {
    const int64_t K = static_cast<int64_t>(r.seeds.size());
    if (!options.share_prefix) return 1;
    const int64_t per = child_pages(r);
    const int64_t room = alloc.num_pages() - prompt_pages(r);
    int64_t g = per > 0 ? room / per : K;
    return std::max<int64_t>(1, std::min({g, K, options.max_running}));
  }

  // Makes [begin, end) of a table writable, charging the pages to `reserved_left`.
  void prepare(PageTable& t, int64_t& reserved_left, int64_t begin, int64_t end) {
    const int64_t before = t.pages_taken();
    t.prepare_write(begin, end, alloc, cache);
    reserved_left -= t.pages_taken() - before;
    if (reserved_left < 0) throw std::logic_error("generate: a sequence outgrew its reservation");
  }

  // Appends a sampled token and decides whether the sample is finished.
  bool append(Seq& s, const SampledToken& t) {
    s.tokens.push_back(t.id);
    s.out.output_ids.push_back(t.id);
    s.out.token_logprobs.push_back(t.logprob);
    s.out.logprob += t.logprob;
    const auto& p = *s.params;
    if (std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), t.id) !=
        p.stop_token_ids.end()) {
      s.out.finish_reason = FinishReason::kStop;
      return true;
    }
    if (!p.stop_strings.empty()) {
      const std::string text = detokenize(s.out.output_ids);
      size_t best = std::string::npos;
      for (const auto& stop : p.stop_strings) {
        // The tail may have changed (a UTF-8 character completed): look back a little.
        const size_t from = s.text_checked > stop.size() + 4 ? s.text_checked - stop.size() - 4 : 0;
        const size_t at = text.find(stop, from);
        if (at != std::string::npos && (best == std::string::npos || at < best)) {
          best = at;
          s.out.stop_string = stop;
        }
      }
      s.text_checked = text.size();
      if (best != std::string::npos) {
        s.out.finish_reason = FinishReason::kStop;
        s.out.text = text.substr(0, best);
        return true;
      }
    }
    if (static_cast<int64_t>(s.tokens.size()) >= s.max_len) {
      s.out.finish_reason = FinishReason::kLength;
      return true;
    }
    return false;
  }

  void finish(int64_t id, Seq& s, const DoneFn& on_done) {
    if (detokenize && s.out.stop_string.empty()) {
      auto ids = s.out.output_ids;
      if (s.out.finish_reason == FinishReason::kStop && !ids.empty()) ids.pop_back();
      s.out.text = detokenize(ids);
    }
    s.table.release(alloc);
    alloc.unreserve(s.reserved_left);
    scheduler->retire(id);
    ++stats.finished_samples;
    auto& r = requests[s.request];
    r.samples[s.sample] = std::move(s.out);
    if (--r.remaining == 0) on_done(s.request, std::move(r.samples));
    seqs.erase(id);
  }

  void step(const std::vector<GenerationRequest>& reqs, const DoneFn& on_done);

  EngineOptions options;
  PagedDecoder decoder;
  Detokenizer detokenize;
  KvCache cache;
  PageAllocator alloc;
  std::unique_ptr<Scheduler> scheduler;
  EngineStats stats;
  std::unordered_map<int64_t, Seq> seqs;
  std::unordered_map<int64_t, Group> groups;
  std::vector<RequestState> requests;
  int64_t next_seq = 0;
};

void Engine::State::step(const std::vector<GenerationRequest>& reqs, const DoneFn& on_done) {
  const StepPlan plan = scheduler->plan(alloc);
  if (plan.empty()) throw std::logic_error("generate: scheduler made no progress");
  StepInputs in;
  // Who owns each logits row: a decoding sequence (>= 0) or a finished prefill (~group).
  std::vector<int64_t> owner;
  auto add_token = [&](int64_t id, int64_t pos, int64_t slot) {
    in.token_ids.push_back(id);
    in.positions.push_back(pos);
    in.slots.push_back(slot);
  };
  for (int64_t id : plan.decode) {
    Seq& s = seqs.at(id);
    const int64_t pos = s.written;
    prepare(s.table, s.reserved_left, pos, pos + 1);
    in.runs.push_back({static_cast<int64_t>(in.token_ids.size()), 1, pos, &s.table.pages()});
    in.logit_tokens.push_back(static_cast<int64_t>(in.token_ids.size()));
    owner.push_back(id);
    add_token(s.tokens[pos], pos, s.table.slot(pos, cache.shape().page_size));
  }
  for (const auto& c : plan.prefill) {
    Group& g = groups.at(c.group);
    const auto& prompt = reqs[g.request].prompt;
    prepare(g.table, g.reserved_left, c.begin, c.begin + c.count);
    const int64_t first = static_cast<int64_t>(in.token_ids.size());
    in.runs.push_back({first, c.count, c.begin, &g.table.pages()});
    for (int64_t j = c.begin; j < c.begin + c.count; ++j) {
      add_token(prompt[j], j, g.table.slot(j, cache.shape().page_size));
    }
    if (c.last) {
      in.logit_tokens.push_back(first + c.count - 1);
      owner.push_back(~c.group);
    }
    stats.prefill_tokens += c.count;
  }
  stats.peak_pages = std::max(stats.peak_pages, alloc.num_pages() - alloc.free_pages());
  const at::Tensor logits = decoder.step(in, cache);  // [M, V] float32 CPU

  // Draws: one per decoding sequence, K per finished prefill (its samples' first tokens).
  std::vector<Draw> draws;
  std::vector<int64_t> draw_seq;
  std::vector<int64_t> draw_group;  // the prefill group of a sample's first draw, else -1
  for (size_t row = 0; row < owner.size(); ++row) {
    if (owner[row] >= 0) {
      Seq& s = seqs.at(owner[row]);
      s.written += 1;
      const int64_t step = static_cast<int64_t>(s.out.output_ids.size());
      draws.push_back({static_cast<int64_t>(row), s.params, uniform_draw(s.out.seed, step)});
      draw_seq.push_back(owner[row]);
      draw_group.push_back(-1);
      continue;
    }
    const int64_t gid = ~owner[row];
    Group& g = groups.at(gid);
    const auto& r = reqs[g.request];
    const int64_t n = static_cast<int64_t>(r.prompt.size());
    for (int64_t k : g.samples) {
      const int64_t id = next_seq++;
      Seq& s = seqs[id];
      s.request = g.request;
      s.sample = k;
      s.params = &r.params;
      s.table = g.table.fork(alloc);
      s.tokens = r.prompt;
      s.prompt_len = n;
      s.max_len = max_len(r);
      s.written = n;
      s.reserved_left = child_pages(r);
      g.reserved_left -= s.reserved_left;
      s.out.seed = r.seeds[k];
      draws.push_back({static_cast<int64_t>(row), s.params, uniform_draw(s.out.seed, 0)});
      draw_seq.push_back(id);
      draw_group.push_back(gid);
    }
  }
  const auto sampled = sample_rows(logits, draws);
  stats.generated_tokens += static_cast<int64_t>(sampled.size());

  // Prefills done: children decode (those not finished by their first token), the prompt's
  // own references and unused reservation go back.
  std::unordered_map<int64_t, std::vector<int64_t>> live;
  for (size_t row = 0; row < owner.size(); ++row) {
    if (owner[row] < 0) live[~owner[row]];
  }
  for (size_t i = 0; i < draws.size(); ++i) {
    const int64_t id = draw_seq[i];
    Seq& s = seqs.at(id);
    const bool done = append(s, sampled[i]);
    if (!done && draw_group[i] >= 0) live[draw_group[i]].push_back(id);
    if (done) finish(id, s, on_done);
  }
  for (auto& [gid, ids] : live) {
    Group& g = groups.at(gid);
    g.table.release(alloc);
    alloc.unreserve(g.reserved_left);
    scheduler->start_decoding(gid, ids);
    groups.erase(gid);
  }
  ++stats.steps;
}

Engine::Engine(LlamaModelImpl& model, EngineOptions options, Detokenizer detokenize) {
  c10::InferenceMode guard;
  s_ = std::make_unique<State>(model, options, std::move(detokenize));
}

Engine::~Engine() = default;

const EngineStats& Engine::stats() const { return s_->stats; }
int64_t Engine::num_pages() const { return s_->alloc.num_pages(); }
int64_t Engine::page_size() const { return s_->cache.shape().page_size; }

void Engine::check(const GenerationRequest& r) const {
  const auto& c = s_->decoder.config();
  if (r.seeds.empty()) throw UsageError("a request needs at least one sample (K >= 1)");
  if (r.prompt.empty()) throw UsageError("the prompt is empty");
  for (size_t i = 0; i < r.prompt.size(); ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= c.vocab_size) {
      throw UsageError("prompt token " + std::to_string(i) + " = " + std::to_string(r.prompt[i]) +
                       " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
    }
  }
  const int64_t n = static_cast<int64_t>(r.prompt.size());
  if (n >= c.max_position_embeddings) {
    throw UsageError("the prompt has " + std::to_string(n) +
                     " tokens and leaves no room in the model's context of " +
                     std::to_string(c.max_position_embeddings));
  }
  validate(r.params);
  for (int64_t id : r.params.stop_token_ids) {
    if (id < 0 || id >= c.vocab_size) {
      throw UsageError("stop token id " + std::to_string(id) + " is outside the vocabulary");
    }
  }
  if (!r.params.stop_strings.empty() && !s_->detokenize) {
    throw UsageError("stop strings need the model's tokenizer");
  }
  const int64_t need = s_->prompt_pages(r) + s_->child_pages(r);
  if (need > s_->alloc.num_pages()) {
    throw UsageError("the KV cache (" + std::to_string(s_->alloc.num_pages()) + " pages of " +
                     std::to_string(s_->cache.shape().page_size) + " tokens) cannot hold a " +
                     std::to_string(n) + "-token prompt plus " +
                     std::to_string(s_->max_len(r) - n) + " new tokens (" + std::to_string(need) +
                     " pages): give it more memory or lower max_new_tokens");
  }
}

void Engine::run(const std::vector<GenerationRequest>& requests, const DoneFn& on_done,
                 const StepFn& on_step) {
  for (const auto& r : requests) check(r);
  c10::InferenceMode guard;
  auto& st = *s_;
  const auto start = std::chrono::steady_clock::now();
  st.stats = EngineStats{};
  // A fresh pool: an earlier run that threw may have left pages held.
  st.alloc = PageAllocator(st.alloc.num_pages());
  st.seqs.clear();
  st.groups.clear();
  st.scheduler = std::make_unique<Scheduler>(
      SchedulerOptions{st.options.max_batch_tokens, st.options.max_running});
  st.requests.assign(requests.size(), RequestState{});
  int64_t next_group = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    const int64_t K = static_cast<int64_t>(r.seeds.size());
    st.requests[i].samples.resize(K);
    st.requests[i].remaining = K;
    const int64_t per_group = st.group_size(r);
    for (int64_t k0 = 0; k0 < K; k0 += per_group) {
      Group g;
      g.request = i;
      for (int64_t k = k0; k < std::min(K, k0 + per_group); ++k) g.samples.push_back(k);
      const int64_t size = static_cast<int64_t>(g.samples.size());
      g.reserved_left = st.prompt_pages(r) + size * st.child_pages(r);
      st.scheduler->enqueue(
          {next_group, static_cast<int64_t>(r.prompt.size()), size, g.reserved_left});
      st.groups.emplace(next_group++, std::move(g));
    }
  }
  while (!st.scheduler->idle()) {
    st.step(requests, on_done);
    st.stats.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (on_step) on_step(st.stats);
  }
}

std::vector<std::vector<GeneratedSample>> Engine::generate(
    const std::vector<GenerationRequest>& requests) {
  std::vector<std::vector<GeneratedSample>> out(requests.size());
  run(requests, [&](size_t i, std::vector<GeneratedSample> s) { out[i] = std::move(s); });
  return out;
}

}  // namespace posttrain::core::generate
