// The rejection-sampling runner (see rejection_sampling.h).
#include "rejection_sampling/rejection_sampling.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include "common/error.h"
#include "common/progress.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/generate/engine.h"
#include "core/generate/sampler.h"
#include "core/generate/stop_tokens.h"
#include "core/tokenizer/tokenizer.h"
#include "datastore/store.h"
#include "rejection_sampling/record.h"
#include "rejection_sampling/render.h"
#include "rejection_sampling/reward_scorer.h"

namespace fs = std::filesystem;

namespace posttrain::rejection_sampling {

using nlohmann::json;
namespace gen = core::generate;

json SampleSummary::to_json() const {
  auto frac = [](int64_t a, int64_t b) { return b > 0 ? json(double(a) / b) : json(nullptr); };
  return {{"prompts_total", prompts_total},
          {"duplicates", duplicates},
          {"skipped", skipped},
          {"prompts", prompts},
          {"samples", samples},
          {"empty", empty},
          {"verified_fraction", frac(verified, verifiable)},
          {"best_verified_fraction", frac(best_verified, prompts_verifiable)},
          {"selected", selected},
          {"pairs", pairs},
          {"mean_reward", rewarded > 0 ? json(reward_sum / rewarded) : json(nullptr)},
          {"generated_tokens", generated_tokens},
          {"seconds", seconds},
          {"samples_per_second", seconds > 0 ? samples / seconds : 0.0}};
}

namespace {

// One prompt to sample, with what the policy sees.
struct Job {
  const SamplePrompt* prompt = nullptr;
  int64_t position = 0;
  std::string system_prompt;
  gen::GenerationRequest request;
};

json run_sampling_settings(const SampleOptions& o) {
  const auto& p = o.sampling;
  return {{"generator", "posttrain sample"},
          {"samples", o.samples},
          {"base_seed", o.seed},
          {"temperature", p.temperature},
          {"top_p", p.top_p},
          {"top_k", p.top_k},
          {"min_p", p.min_p},
          {"max_new_tokens", p.max_new_tokens},
          {"stop", p.stop_strings}};
}

std::vector<SamplePrompt> read_prompts(const SampleOptions& o) {
  auto prompts = o.prompts_path.empty() ? read_store_prompts(o.prompts_store, o.prompts_store_round)
                                        : read_jsonl_prompts(o.prompts_path);
  if (o.prompts_limit > 0 && static_cast<int64_t>(prompts.size()) > o.prompts_limit) {
    prompts.resize(static_cast<size_t>(o.prompts_limit));
  }
  return prompts;
}

// Keeps the lines of OUT/candidates.jsonl whose prompt is committed (an interrupted run may
// have left a prompt's lines half written, or none), so the file ends as an uninterrupted run's.
void trim_candidates(const std::string& path, const std::set<int64_t>& done_prompt_ids) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::ostringstream kept;
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline: cut off mid-write
    const json row = json::parse(line, nullptr, false);
    if (row.is_object() && row.contains("prompt_id") &&
        done_prompt_ids.count(row["prompt_id"].get<int64_t>())) {
      kept << line << "\n";
    }
  }
  in.close();
  std::ofstream out(path + ".tmp", std::ios::trunc);
  out << kept.str();
  out.close();
  fs::rename(path + ".tmp", path);
}

class Runner {
 public:
  explicit Runner(const SampleOptions& o) : o_(o) {}

  SampleSummary run();

 private:
  void open_store();
  std::vector<Job> plan(const std::vector<SamplePrompt>& prompts, gen::Engine& engine);
  void process(Job& job, const std::vector<gen::GeneratedSample>& samples);
  void write_candidates(const PromptOutcome& outcome, const Recorded& rec, const Decision& d);

  const SampleOptions& o_;
  std::optional<datastore::Store> store_;
  std::optional<core::Tokenizer> tok_;
  core::ChatFormat format_ = core::ChatFormat::kLlama3;
  gen::SamplingParams params_;
  std::unique_ptr<RewardScorer> reward_;
  std::unique_ptr<Verifiers> verifiers_;
  RecordContext ctx_;
  std::ofstream candidates_;
  SampleSummary sum_;
};

void Runner::open_store() {
  store_.emplace(datastore::Store::open(o_.store));
  // Both idempotent, so a resumed run finds the ids the interrupted one made.
  ctx_.run_id = store_->ensure_run("rejection_sampling");
  ctx_.checkpoint_id = store_->add_checkpoint(absolute_path(o_.model_dir), "policy", o_.round);
  ctx_.round = o_.round;
  ctx_.sampling = run_sampling_settings(o_);
}

std::vector<Job> Runner::plan(const std::vector<SamplePrompt>& prompts, gen::Engine& engine) {
  std::vector<Job> jobs;
  std::set<std::string> seen;
  std::set<int64_t> done_ids;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const SamplePrompt& p = prompts[i];
    if (!seen.insert(datastore::content_hash(p.content)).second) {
      ++sum_.duplicates;
      continue;
    }
    if (auto id = store_->find_prompt(p.content);
        id && store_->stage_done(ctx_.run_id, o_.round, done_marker(*id))) {
      done_ids.insert(*id);
      ++sum_.skipped;
      continue;
    }
    Job job;
    job.prompt = &p;
    job.position = static_cast<int64_t>(i);
    job.system_prompt = draw_system_prompt(o_.system_prompts, o_.seed, job.position, p.content);
    job.request.prompt =
        render_prompt(*tok_, format_, prompt_messages(p.content, job.system_prompt));
    const uint64_t base = gen::sample_seed(o_.seed, job.position);
    for (int64_t k = 0; k < o_.samples; ++k) job.request.seeds.push_back(gen::sample_seed(base, k));
    job.request.params = params_;
    try {
      engine.check(job.request);
    } catch (const UsageError& e) {
      throw InputError(p.where, e.what());
    }
    jobs.push_back(std::move(job));
  }
  const std::string path = o_.out_dir + "/candidates.jsonl";
  trim_candidates(path, done_ids);
  candidates_.open(path, std::ios::app);
  if (!candidates_) throw IoError("cannot write " + path);
  return jobs;
}

void Runner::process(Job& job, const std::vector<gen::GeneratedSample>& samples) {
  PromptOutcome out;
  out.prompt = job.prompt;
  out.position = job.position;
  out.system_prompt = job.system_prompt;
  out.prompt_tokens = static_cast<int64_t>(job.request.prompt.size());
  std::vector<std::string> texts;
  for (size_t k = 0; k < samples.size(); ++k) {
    const auto& s = samples[k];
    Candidate c;
    c.sample = static_cast<int64_t>(k);
    c.seed = s.seed;
    c.text = valid_utf8(s.text);
    c.tokens = static_cast<int64_t>(s.output_ids.size());
    c.finish_reason = gen::finish_reason_name(s.finish_reason);
    c.stop = s.stop_string;
    c.logprob = s.logprob;
    sum_.generated_tokens += c.tokens;
    if (c.text.empty()) ++sum_.empty;
    out.candidates.push_back(std::move(c));
  }
  // Score the non-empty candidates (empty ones are neither stored nor ranked).
  std::vector<size_t> live;
  for (size_t k = 0; k < out.candidates.size(); ++k) {
    if (!out.candidates[k].text.empty()) {
      live.push_back(k);
      texts.push_back(out.candidates[k].text);
    }
  }
  const std::string& kind = job.prompt->kind;
  if (!kind.empty() && !texts.empty()) {
    const auto verdicts = verifiers_->verify(kind, job.prompt->checker, texts);
    for (size_t j = 0; j < live.size(); ++j) out.candidates[live[j]].verdict = verdicts[j];
  }
  if (reward_ && !texts.empty()) {
    const auto rewards =
        reward_->score(prompt_with_system(job.prompt->content, job.system_prompt), texts);
    for (size_t j = 0; j < live.size(); ++j) out.candidates[live[j]].reward = rewards[j];
  }
  const Decision d = decide(o_.ranking, out);
  const Recorded rec =
      record_prompt(*store_, ctx_, out, d, [&](const Recorded& r) { write_candidates(out, r, d); });

  ++sum_.prompts;
  sum_.samples += static_cast<int64_t>(out.candidates.size());
  if (!kind.empty()) {
    ++sum_.prompts_verifiable;
    if (!d.order.empty() && out.candidates[d.order.front()].verdict->passed) ++sum_.best_verified;
  }
  for (const auto& c : out.candidates) {
    if (c.verdict) {
      ++sum_.verifiable;
      sum_.verified += c.verdict->passed;
    }
    if (c.reward) {
      ++sum_.rewarded;
      sum_.reward_sum += *c.reward;
    }
  }
  sum_.selected += d.selected.has_value();
  sum_.pairs += rec.pair_id.has_value();
}

void Runner::write_candidates(const PromptOutcome& out, const Recorded& rec, const Decision& d) {
  std::vector<int64_t> rank(out.candidates.size(), -1);
  for (size_t r = 0; r < d.order.size(); ++r) rank[d.order[r]] = static_cast<int64_t>(r);
  for (size_t k = 0; k < out.candidates.size(); ++k) {
    const Candidate& c = out.candidates[k];
    json line = {{"prompt_id", rec.prompt_id},
                 {"id", out.prompt->id},
                 {"position", out.position},
                 {"kind", out.prompt->kind},
                 {"system_prompt", out.system_prompt},
                 {"prompt_tokens", out.prompt_tokens},
                 {"sample", c.sample},
                 {"seed", c.seed},
                 {"text", c.text},
                 {"tokens", c.tokens},
                 {"finish_reason", c.finish_reason},
                 {"logprob", c.logprob},
                 {"response_id", rec.response_ids[k]},
                 {"rank", rank[k]},
                 {"selected", d.selected == k},
                 {"chosen", d.pair && d.pair->first == k && rec.pair_id.has_value()},
                 {"rejected", d.pair && d.pair->second == k && rec.pair_id.has_value()}};
    if (c.verdict) {
      line["verified"] = c.verdict->passed;
      line["verdict"] = c.verdict->verdict;
      line["feedback"] = c.verdict->feedback;
    }
    if (c.reward) line["reward"] = *c.reward;
    candidates_ << line.dump() << "\n";
  }
  candidates_.flush();
  if (!candidates_) throw IoError("cannot write " + o_.out_dir + "/candidates.jsonl");
}

SampleSummary Runner::run() {
  if (o_.device == "cuda" && !at::hasCUDA()) throw UsageError("model.device cuda: no CUDA device");
  const auto config = core::load_config(o_.model_dir);
  if (config.kind == core::ModelKind::kRewardModel) {
    throw UsageError("model.path " + o_.model_dir +
                     " is a reward model; the policy must be a "
                     "causal language model");
  }
  if (!fs::exists(o_.model_dir + "/tokenizer.json")) {
    throw UsageError("model.path " + o_.model_dir + " has no tokenizer.json");
  }
  tok_ = core::Tokenizer::load_dir(o_.model_dir);
  format_ =
      o_.chat_format == "auto" ? tok_->chat_format() : core::parse_chat_format(o_.chat_format);
  const auto prompts = read_prompts(o_);
  sum_.prompts_total = static_cast<int64_t>(prompts.size());

  params_ = o_.sampling;  // stop ids come from the policy's generation_config.json
  params_.stop_token_ids = gen::model_stop_token_ids(o_.model_dir, config);
  const at::Device device(o_.device == "cuda" ? at::kCUDA : at::kCPU);
  auto model =
      core::load_model(o_.model_dir, device, o_.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat);
  model->eval();
  const core::Tokenizer tok = *tok_;
  gen::Engine engine(*model, o_.engine,
                     [tok](const std::vector<int64_t>& ids) { return tok.decode(ids); });
  if (!o_.reward_model_dir.empty()) {
    reward_ = std::make_unique<RewardScorer>(o_.reward_model_dir, o_.device, o_.dtype,
                                             o_.reward_batch_size);
    ctx_.reward_scorer = reward_->scorer();
  }
  verifiers_ = std::make_unique<Verifiers>(o_.verifier);
  fs::create_directories(o_.out_dir);
  open_store();
  std::vector<Job> jobs = plan(prompts, engine);

  const auto start = std::chrono::steady_clock::now();
  Progress progress("sample", static_cast<int64_t>(jobs.size()) * o_.samples);
  int64_t finished_before = 0;
  for (size_t begin = 0; begin < jobs.size(); begin += static_cast<size_t>(o_.chunk_prompts)) {
    const size_t end = std::min(jobs.size(), begin + static_cast<size_t>(o_.chunk_prompts));
    std::vector<gen::GenerationRequest> requests;
    for (size_t i = begin; i < end; ++i) requests.push_back(jobs[i].request);
    // Commit in prompt order: a prompt's results wait until every earlier one is written, so
    // ids are assigned as an uninterrupted run assigns them.
    std::vector<std::optional<std::vector<gen::GeneratedSample>>> ready(requests.size());
    size_t next = 0;
    engine.run(
        requests,
        [&](size_t i, std::vector<gen::GeneratedSample> samples) {
          ready[i] = std::move(samples);
          while (next < ready.size() && ready[next]) {
            process(jobs[begin + next], *ready[next]);
            ready[next++].reset();
          }
        },
        [&](const gen::EngineStats& st) {
          std::ostringstream extra;
          extra.precision(1);
          extra << std::fixed << st.generated_tokens / std::max(st.seconds, 1e-9) << " tok/s";
          progress.update(finished_before + st.finished_samples, extra.str());
        });
    finished_before += static_cast<int64_t>(requests.size()) * o_.samples;
  }
  progress.finish();
  sum_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  candidates_.close();
  return sum_;
}

}  // namespace

SampleSummary run_sample(const SampleOptions& options) {
  Runner runner(options);
  SampleSummary sum = runner.run();
  json j = sum.to_json();
  j["round"] = options.round;
  j["store"] = options.store;
  j["policy"] = options.model_dir;
  if (!options.reward_model_dir.empty()) j["reward_model"] = options.reward_model_dir;
  const std::string path = options.out_dir + "/summary.json";
  std::ofstream out(path + ".tmp", std::ios::trunc);
  out << j.dump(2) << "\n";
  out.close();
  if (!out) throw IoError("cannot write " + path);
  fs::rename(path + ".tmp", path);
  return sum;
}

}  // namespace posttrain::rejection_sampling
