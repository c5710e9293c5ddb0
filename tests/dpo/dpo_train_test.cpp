// `dpo train` end to end on the tiny preset: DPO on pairs that prefer vowels over consonants
// lifts held-out preference accuracy from a tie (policy = reference: every reward is 0) to
// above 90%; the NLL term keeps the chosen log-prob higher than the same run without it;
// reference log-probs are computed once (zero reference forwards on a second run) and a change
// of template or truncation misses the cache.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/checkpoint/hf_checkpoint.h"
#include "core/model/llama.h"
#include "core/tokenizer/tokenizer.h"
#include "datastore/store.h"
#include "dpo/dpo.h"
#include "dpo/options.h"
#include "tests/dpo/dpo_test_util.h"

namespace fs = std::filesystem;

namespace posttrain::dpo {
namespace {

// n pairs: prompt "Word:", chosen 4 letters from "aeiou", rejected 4 from "bcdfg".
std::vector<nlohmann::json> letter_pairs(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  auto word = [&](const char* letters) {
    std::string w;
    for (int i = 0; i < 4; ++i) w += letters[rng() % 5];
    return w;
  };
  std::vector<nlohmann::json> out;
  for (int i = 0; i < n; ++i) {
    out.push_back({{"prompt", "Word:"}, {"chosen", word("aeiou")}, {"rejected", word("bcdfg")}});
  }
  return out;
}

void write_jsonl(const std::string& path, const std::vector<nlohmann::json>& rows) {
  std::ofstream f(path);
  for (const auto& r : rows) f << r.dump() << "\n";
}

// The metrics.jsonl line that has `key`, the last one.
nlohmann::json last_with(const std::string& out_dir, const std::string& key) {
  std::ifstream f(out_dir + "/metrics.jsonl");
  std::string line;
  nlohmann::json found;
  while (std::getline(f, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains(key)) found = j;
  }
  return found;
}

class DpoTrain : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    auto tok = core::Tokenizer::byte_level();
    core::LlamaConfig c = core::preset_config("tiny");
    c.vocab_size = tok.vocab_size();
    core::LlamaModel m(c);
    m->reset_parameters(3);
    core::save_model(*m, model(), at::kFloat);
    tok.save_dir(model());
    write_jsonl(*dir_ / "train.jsonl", letter_pairs(256, 1));
    write_jsonl(*dir_ / "heldout.jsonl", letter_pairs(64, 2));
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string model() { return *dir_ / "model"; }

  nlohmann::json config(const std::string& out, nlohmann::json extra = nlohmann::json::object()) {
    nlohmann::json c = {
        {"model", {{"path", model()}}},
        {"data",
         {{"sources", {*dir_ / "train.jsonl"}},
          {"eval_path", *dir_ / "heldout.jsonl"},
          {"packing", false}}},  // 8 pairs a step (packed rows hold dozens of these pairs)
        {"optimizer", {{"lr", 1e-3}}},
        {"schedule", {{"warmup_steps", 5}, {"decay", "constant"}}},
        {"training", {{"max_steps", 120}, {"micro_batch_size", 8}, {"threads", 2}, {"seed", 5}}},
        {"output", {{"dir", *dir_ / out}}}};
    c.merge_patch(extra);
    const std::string path = *dir_ / (out + ".json");
    std::ofstream(path) << c.dump();
    return dpo_schema().load(path, {});
  }

  static testing::TempDir* dir_;
};
testing::TempDir* DpoTrain::dir_ = nullptr;

TEST_F(DpoTrain, LearnsTheHeldOutPreferenceAndTheNllTermKeepsChosenUp) {
  const DpoResult with = run_dpo(config("with_nll"));
  EXPECT_EQ(with.train.final_step, 120);
  EXPECT_EQ(with.eval_pairs, 64);
  const auto eval_with = last_with(*dir_ / "with_nll", "eval_rewards/accuracies");
  ASSERT_FALSE(eval_with.is_null());
  EXPECT_GT(eval_with["eval_rewards/accuracies"].get<double>(), 0.9) << eval_with.dump();
  for (const char* k : {"loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
                        "rewards/margins", "logps/chosen", "logps/rejected", "logits/chosen",
                        "logits/rejected", "nll_loss"}) {
    EXPECT_TRUE(last_with(*dir_ / "with_nll", k).contains(k)) << k;
  }
  // At step 0 the policy is the reference: every reward is 0 (up to rounding between the
  // reference's rows and the packed training rows), no pair is preferred and the DPO loss is
  // log 2. The first logged training step shows it.
  std::ifstream f(*dir_ / "with_nll/metrics.jsonl");
  std::string first;
  nlohmann::json step1;
  while (std::getline(f, first)) {  // past the {"event": "data"} line
    step1 = nlohmann::json::parse(first);
    if (!step1.contains("event")) break;
  }
  EXPECT_EQ(step1["step"], 1) << first;
  EXPECT_NEAR(step1["loss"].get<double>() - 0.2 * step1["nll_loss"].get<double>(), std::log(2.0),
              1e-4)
      << first;
  EXPECT_LT(std::abs(step1["rewards/margins"].get<double>()), 1e-4) << first;

  const DpoResult without = run_dpo(config("without_nll", {{"dpo", {{"rpo_alpha", 0.0}}}}));
  const auto eval_without = last_with(*dir_ / "without_nll", "eval_logps/chosen");
  EXPECT_GT(eval_with["eval_logps/chosen"].get<double>(),
            eval_without["eval_logps/chosen"].get<double>())
      << eval_with.dump() << "\n" << eval_without.dump();
}

// A store with `n` unlabelled pairs in round 1 (letter pairs).
void fill_store(const std::string& path, int n) {
  auto store = datastore::Store::open(path);
  for (const auto& row : letter_pairs(n, 9)) {
    datastore::NewPair p;
    p.prompt_id = store.add_prompt(row["prompt"]);
    datastore::NewResponse r;
    r.prompt_id = p.prompt_id;
    r.round = 1;
    r.content = row["chosen"];
    p.chosen_id = store.add_response(r);
    r.content = row["rejected"];
    p.rejected_id = store.add_response(r);
    p.round = 1;
    store.add_pair(p);
  }
}

TEST_F(DpoTrain, ReferenceLogprobsAreComputedOnceAndMissWhenSettingsChange) {
  const std::string db = *dir_ / "store.db";
  fill_store(db, 12);
  const nlohmann::json store_data = {
      {"data", {{"sources", nlohmann::json::array()}, {"eval_path", nullptr}, {"store", db}}},
      {"training", {{"max_steps", 1}}}};
  const DpoResult first = run_dpo(config("cache_a", store_data));
  EXPECT_EQ(first.reference.pairs, 12);
  EXPECT_EQ(first.reference.computed, 12);
  EXPECT_GT(first.reference.forwards, 0);
  // A later run (another OUT) reads them from the store: no reference forward.
  const DpoResult second = run_dpo(config("cache_b", store_data));
  EXPECT_EQ(second.reference.cached, 12);
  EXPECT_EQ(second.reference.forwards, 0);
  // Another template (raw text instead of the chat template) or another truncation changes the
  // tokens: the cache misses.
  nlohmann::json text = store_data;
  text["data"]["prompt_completion"] = "text";
  EXPECT_EQ(run_dpo(config("cache_c", text)).reference.computed, 12);
  nlohmann::json shorter = store_data;
  shorter["data"]["max_length"] = 20;
  shorter["data"]["max_prompt_length"] = 10;
  EXPECT_EQ(run_dpo(config("cache_d", shorter)).reference.computed, 12);
  EXPECT_EQ(run_dpo(config("cache_e", text)).reference.forwards, 0);

  // Without the store cache the values go to OUT/ref_logprobs.jsonl and a rerun reads them.
  nlohmann::json file_only = store_data;
  file_only["dpo"]["reference_cache"] = false;
  EXPECT_GT(run_dpo(config("cache_f", file_only)).reference.forwards, 0);
  EXPECT_TRUE(fs::exists(*dir_ / "cache_f/ref_logprobs.jsonl"));
  EXPECT_EQ(run_dpo(config("cache_f", file_only)).reference.forwards, 0);
}

}  // namespace
}  // namespace posttrain::dpo
