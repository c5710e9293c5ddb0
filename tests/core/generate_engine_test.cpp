// The batched decoder (core/generate/engine.h) on the committed fixture models, CPU float32:
// greedy output equals transformers' generate (generate_reference.json, made by
// tests/fixtures/make_fixtures.py --generate-only); batching, chunked prefill, prefix sharing
// and a small page pool change nothing; sampled tokens' log-probs equal core::token_logprobs of
// the finished sequence; stop strings, stop ids and length limits end samples where they must.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/error.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/generate/engine.h"
#include "core/generate/sampler.h"
#include "core/logprobs.h"
#include "model_test_util.h"

namespace posttrain::core::generate {
namespace {

using core::testing::model_fixture;
using core::testing::read_json;

LlamaModel load(const std::string& name) {
  auto m = load_model(model_fixture(name));
  m->eval();
  return m;
}

// Prompts of mixed lengths (none a multiple of 4, so page-size-4 runs copy shared last pages).
std::vector<GenerationRequest> sampled_requests(int64_t K, int64_t max_new = 20) {
  std::vector<GenerationRequest> reqs;
  const std::vector<int64_t> lengths = {3, 10, 21, 7, 50, 1};
  for (size_t i = 0; i < lengths.size(); ++i) {
    GenerationRequest r;
    for (int64_t j = 0; j < lengths[i]; ++j) r.prompt.push_back(3 + (i * 37 + j * 11) % 280);
    for (int64_t k = 0; k < K; ++k) r.seeds.push_back(sample_seed(100 + i, k));
    r.params.temperature = 1.0;
    r.params.top_p = 0.9;
    r.params.max_new_tokens = max_new;
    r.params.stop_token_ids = {2};
    reqs.push_back(r);
  }
  return reqs;
}

EngineOptions small_steps() {
  EngineOptions o;
  o.page_size = 4;
  o.num_pages = 512;
  o.max_batch_tokens = 24;  // prompts prefill in chunks beside other sequences' decode tokens
  return o;
}

void expect_same(const std::vector<std::vector<GeneratedSample>>& a,
                 const std::vector<std::vector<GeneratedSample>>& b, double tol = 1e-5) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].size(), b[i].size());
    for (size_t k = 0; k < a[i].size(); ++k) {
      EXPECT_EQ(a[i][k].output_ids, b[i][k].output_ids) << "request " << i << " sample " << k;
      EXPECT_EQ(a[i][k].finish_reason, b[i][k].finish_reason);
      ASSERT_EQ(a[i][k].token_logprobs.size(), b[i][k].token_logprobs.size());
      for (size_t t = 0; t < a[i][k].token_logprobs.size(); ++t) {
        EXPECT_NEAR(a[i][k].token_logprobs[t], b[i][k].token_logprobs[t], tol);
      }
    }
  }
}

class GenerateGreedy : public ::testing::TestWithParam<std::string> {};

TEST_P(GenerateGreedy, MatchesTransformers) {
  auto model = load(GetParam());
  const auto ref = read_json(model_fixture(GetParam()) + "/generate_reference.json");
  std::vector<GenerationRequest> reqs;
  for (const auto& c : ref["cases"]) {
    GenerationRequest r;
    r.prompt = c["prompt"].get<std::vector<int64_t>>();
    r.seeds = {0};
    r.params.temperature = 0;
    r.params.max_new_tokens = ref["max_new_tokens"].get<int64_t>();
    r.params.stop_token_ids = {ref["eos_token_id"].get<int64_t>()};
    reqs.push_back(r);
  }
  // One prompt at a time.
  for (size_t i = 0; i < reqs.size(); ++i) {
    Engine engine(*model, EngineOptions{});
    const auto out = engine.generate({reqs[i]});
    EXPECT_EQ(out[0][0].output_ids, ref["cases"][i]["output_ids"].get<std::vector<int64_t>>())
        << "prompt " << i;
  }
  // All prompts in one batch, small pages and chunked prefill.
  Engine engine(*model, small_steps());
  const auto out = engine.generate(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(out[i][0].output_ids, ref["cases"][i]["output_ids"].get<std::vector<int64_t>>())
        << "batched prompt " << i;
    const bool stopped = out[i][0].output_ids.back() == ref["eos_token_id"].get<int64_t>();
    EXPECT_EQ(out[i][0].finish_reason, stopped ? FinishReason::kStop : FinishReason::kLength);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GenerateGreedy,
                         ::testing::Values("llama3_untied", "tied_plain"));

TEST(GenerateEngine, BatchedEqualsOneAtATime) {
  auto model = load("llama3_untied");
  const auto reqs = sampled_requests(3);
  Engine batched(*model, small_steps());
  const auto all = batched.generate(reqs);
  std::vector<std::vector<GeneratedSample>> alone;
  for (const auto& r : reqs) {
    Engine e(*model, EngineOptions{});
    alone.push_back(e.generate({r})[0]);
  }
  expect_same(all, alone);
  // Different seeds draw different samples (the streams matter).
  EXPECT_NE(all[4][0].output_ids, all[4][1].output_ids);
}

TEST(GenerateEngine, SharedPrefixEqualsUnshared) {
  auto model = load("llama3_untied");
  const auto reqs = sampled_requests(4);
  auto opts = small_steps();
  Engine shared(*model, opts);
  const auto a = shared.generate(reqs);
  opts.share_prefix = false;
  Engine unshared(*model, opts);
  const auto b = unshared.generate(reqs);
  expect_same(a, b);
  int64_t prompt_tokens = 0;
  for (const auto& r : reqs) prompt_tokens += r.prompt.size();
  EXPECT_EQ(shared.stats().prefill_tokens, prompt_tokens);  // each prompt once
  EXPECT_EQ(unshared.stats().prefill_tokens, 4 * prompt_tokens);
}

TEST(GenerateEngine, LogprobsEqualScoringTheFinishedSequence) {
  auto model = load("llama3_untied");
  const auto reqs = sampled_requests(2, 30);
  Engine engine(*model, small_steps());
  const auto out = engine.generate(reqs);
  c10::InferenceMode guard;
  for (size_t i = 0; i < reqs.size(); ++i) {
    for (const auto& s : out[i]) {
      std::vector<int64_t> ids = reqs[i].prompt;
      ids.insert(ids.end(), s.output_ids.begin(), s.output_ids.end());
      ForwardInputs in;
      in.input_ids = core::testing::ids_tensor(ids);
      const auto lp = token_logprobs(*model, in);  // [1, T-1]
      const int64_t n = reqs[i].prompt.size();
      double sum = 0;
      for (size_t t = 0; t < s.output_ids.size(); ++t) {
        EXPECT_NEAR(s.token_logprobs[t], lp[0][n - 1 + t].item<double>(), 1e-4);
        sum += s.token_logprobs[t];
      }
      EXPECT_NEAR(s.logprob, sum, 1e-9);
    }
  }
}

TEST(GenerateEngine, RequestsWaitWhenThePoolIsExhausted) {
  auto model = load("llama3_untied");
  const auto reqs = sampled_requests(2);
  Engine roomy(*model, small_steps());
  const auto want = roomy.generate(reqs);
  // The 50-token prompt with 20 new tokens needs 13 prompt pages + 2 x 6 sample pages = 25
  // pages of 4 tokens: a 30-page pool runs about one request at a time, the rest wait.
  auto opts = small_steps();
  opts.num_pages = 30;
  Engine tight(*model, opts);
  expect_same(tight.generate(reqs), want);
  EXPECT_LE(tight.stats().peak_pages, 30);
  EXPECT_GT(tight.stats().steps, roomy.stats().steps);  // it did have to wait
  // 19 pages cannot hold both samples of the 50-token prompt at once (25): its samples are
  // prefilled in turn, each alone (13 + 6), still with the same tokens.
  opts.num_pages = 19;
  Engine tighter(*model, opts);
  expect_same(tighter.generate(reqs), want);
  // 18 pages cannot hold even one sample of it: refused up front, nothing run.
  opts.num_pages = 18;
  Engine too_small(*model, opts);
  EXPECT_THROW(too_small.check(reqs[4]), UsageError);
  EXPECT_THROW(too_small.generate(reqs), UsageError);
}

// Two letters per token, so stop strings can straddle tokens.
std::string two_letters(const std::vector<int64_t>& ids) {
  std::string s;
  for (int64_t id : ids) {
    s += static_cast<char>('a' + id % 26);
    s += static_cast<char>('a' + (id / 26) % 26);
  }
  return s;
}

GenerationRequest greedy_request(int64_t max_new) {
  GenerationRequest r;
  r.prompt = {5, 17, 33, 8, 91, 140, 12};
  r.seeds = {1};
  r.params.temperature = 0;
  r.params.max_new_tokens = max_new;
  return r;
}

TEST(GenerateEngine, StopStringsAcrossTokenBoundaries) {
  auto model = load("llama3_untied");
  Engine engine(*model, EngineOptions{}, two_letters);
  const auto free_run = engine.generate({greedy_request(24)})[0][0];
  ASSERT_EQ(free_run.output_ids.size(), 24u);
  const std::string text = two_letters(free_run.output_ids);
  EXPECT_EQ(free_run.text, text);
  // Characters 5..8: the second letter of token 2, token 3, the first letter of token 4.
  const std::string stop = text.substr(5, 4);
  const size_t at = text.find(stop);
  const size_t last_token = (at + stop.size() - 1) / 2;  // the token completing the match
  auto r = greedy_request(24);
  r.params.stop_strings = {"never-there", stop};
  const auto s = engine.generate({r})[0][0];
  EXPECT_EQ(s.finish_reason, FinishReason::kStop);
  EXPECT_EQ(s.stop_string, stop);
  EXPECT_EQ(s.text, text.substr(0, at));
  EXPECT_EQ(s.output_ids, std::vector<int64_t>(free_run.output_ids.begin(),
                                               free_run.output_ids.begin() + last_token + 1));
}

TEST(GenerateEngine, StopTokenIdsAndLengthLimits) {
  auto model = load("llama3_untied");
  Engine engine(*model, EngineOptions{}, two_letters);
  const auto free_run = engine.generate({greedy_request(24)})[0][0];
  // A stop id: the output ends at its first occurrence, which stays in output_ids, not in text.
  const int64_t stop_id = free_run.output_ids[3];
  size_t first = 0;
  while (free_run.output_ids[first] != stop_id) ++first;
  auto r = greedy_request(24);
  r.params.stop_token_ids = {stop_id};
  const auto s = engine.generate({r})[0][0];
  const std::vector<int64_t> kept(free_run.output_ids.begin(),
                                  free_run.output_ids.begin() + first + 1);
  EXPECT_EQ(s.output_ids, kept);
  EXPECT_EQ(s.finish_reason, FinishReason::kStop);
  EXPECT_EQ(s.text, two_letters(std::vector<int64_t>(kept.begin(), kept.end() - 1)));
  // max_new_tokens.
  const auto five = engine.generate({greedy_request(5)})[0][0];
  EXPECT_EQ(five.output_ids,
            std::vector<int64_t>(free_run.output_ids.begin(), free_run.output_ids.begin() + 5));
  EXPECT_EQ(five.finish_reason, FinishReason::kLength);
  // The context (256 positions) caps a 250-token prompt at 6 new tokens.
  auto longp = greedy_request(20);
  longp.prompt.assign(250, 7);
  const auto capped = engine.generate({longp})[0][0];
  EXPECT_EQ(capped.output_ids.size(), 6u);
  EXPECT_EQ(capped.finish_reason, FinishReason::kLength);
}

TEST(GenerateEngine, RejectsBadRequests) {
  auto model = load("llama3_untied");
  Engine engine(*model, EngineOptions{});
  auto r = greedy_request(4);
  r.seeds.clear();  // K = 0
  EXPECT_THROW(engine.check(r), UsageError);
  r = greedy_request(4);
  r.prompt.clear();
  EXPECT_THROW(engine.check(r), UsageError);
  r = greedy_request(4);
  r.prompt[2] = 288;  // vocabulary is 288
  EXPECT_THROW(engine.check(r), UsageError);
  r = greedy_request(4);
  r.prompt.assign(256, 7);  // fills the context
  EXPECT_THROW(engine.check(r), UsageError);
  r = greedy_request(4);
  r.params.top_p = 1.5;
  EXPECT_THROW(engine.check(r), UsageError);
  r = greedy_request(4);
  r.params.stop_strings = {"x"};  // no detokenizer
  EXPECT_THROW(engine.check(r), UsageError);
  EXPECT_NO_THROW(engine.check(greedy_request(4)));
}

}  // namespace
}  // namespace posttrain::core::generate
