// core/scoring.h: score_sequences against token_logprobs on each sequence alone (batching and
// padding change nothing; sums follow the masks), score_groups (shared-prefix rows, packed or
// not) against score_sequences on each prompt + response, rewards likewise, and the reference
// settings hash and checkpoint fingerprint as properties (equal inputs equal, any change
// differs).
#include "core/scoring.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/files.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/logprobs.h"
#include "model_test_util.h"

namespace posttrain::core {
namespace {

using Ids = std::vector<int64_t>;

LlamaConfig tiny(ModelKind kind) {
  auto c = preset_config("tiny");
  c.kind = kind;
  c.num_hidden_layers = 2;
  return c;
}

Ids draw(int64_t n, int64_t vocab) {
  const auto t = at::randint(0, vocab, {n}, at::kLong);
  return Ids(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n);
}

TEST(ScoreSequences, EqualsEachSequenceAloneWhateverTheBatch) {
  LlamaModel model(tiny(ModelKind::kCausalLM));
  model->reset_parameters(2);
  at::manual_seed(8);
  std::vector<ScoredSequence> seqs = {{draw(9, 512), {}}, {draw(1, 512), {}}, {draw(20, 512), {}}};
  // The third counts only tokens 5..19 toward its sum.
  seqs[2].target_mask.assign(20, 0);
  for (int t = 5; t < 20; ++t) seqs[2].target_mask[t] = 1;
  ScoringOptions one, three;
  one.batch_size = 1;
  three.batch_size = 3;
  const auto a = score_sequences(*model, seqs, one), b = score_sequences(*model, seqs, three);
  for (size_t i = 0; i < seqs.size(); ++i) {
    at::NoGradGuard no_grad;
    const auto want = token_logprobs(*model, {testing::ids_tensor(seqs[i].ids), {}, {}, {}})
                          .squeeze(0)
                          .to(at::kDouble);  // [n - 1]
    ASSERT_EQ(a[i].token_logprobs.size(), seqs[i].ids.size() - 1);
    ASSERT_EQ(b[i].token_logprobs.size(), seqs[i].ids.size() - 1);
    for (size_t t = 0; t + 1 < seqs[i].ids.size(); ++t) {
      EXPECT_NEAR(a[i].token_logprobs[t], want[t].item<double>(), 1e-5);
      EXPECT_NEAR(b[i].token_logprobs[t], want[t].item<double>(), 1e-5);
    }
    // Sum over targets: token t >= 1 with its mask set, i.e. token_logprobs[t - 1].
    const int64_t first = i == 2 ? 5 : 1;
    const int64_t n = static_cast<int64_t>(seqs[i].ids.size());
    const double sum = n > first ? want.narrow(0, first - 1, n - first).sum().item<double>() : 0;
    EXPECT_NEAR(b[i].logprob_sum, sum, 1e-5 * std::max(1.0, std::abs(sum)));
    EXPECT_EQ(b[i].num_targets, std::max<int64_t>(0, n - first));
  }
  EXPECT_THROW(score_sequences(*model, {{{}, {}}}, one), UsageError);
  EXPECT_THROW(score_sequences(*model, {{{1, 2}, {1}}}, one), UsageError);
}

std::vector<ScoredGroup> groups(int64_t vocab) {
  at::manual_seed(9);
  std::vector<ScoredGroup> g = {{draw(24, vocab), {draw(6, vocab), draw(3, vocab), draw(5, vocab)}, {}},
                                {draw(1, vocab), {draw(4, vocab), draw(2, vocab)}, {}},
                                {draw(16, vocab), {draw(4, vocab), draw(4, vocab)}, {}}};
  // The last group counts only each response's first two tokens.
  g[2].response_masks = {{1, 1, 0, 0}, {1, 1, 0, 0}};
  return g;
}

// The sequences score_groups must equal: prompt + response, targets = masked-in response tokens.
std::vector<ScoredSequence> as_sequences(const std::vector<ScoredGroup>& gs) {
  std::vector<ScoredSequence> seqs;
  for (const auto& g : gs) {
    for (size_t k = 0; k < g.responses.size(); ++k) {
      ScoredSequence s{g.prompt, std::vector<uint8_t>(g.prompt.size(), 0)};
      s.ids.insert(s.ids.end(), g.responses[k].begin(), g.responses[k].end());
      for (size_t i = 0; i < g.responses[k].size(); ++i) {
        s.target_mask.push_back(g.response_masks.empty() ? 1 : g.response_masks[k][i]);
      }
      seqs.push_back(std::move(s));
    }
  }
  return seqs;
}

TEST(ScoreGroups, EqualsSeparateSequencesPackedOrNot) {
  LlamaModel model(tiny(ModelKind::kCausalLM));
  model->reset_parameters(6);
  const auto gs = groups(512);
  ScoringOptions sep;
  const auto want = score_sequences(*model, as_sequences(gs), sep);
  for (int64_t max_row : {0, 64}) {  // 64: the first two groups share a row
    SCOPED_TRACE("max_row_tokens " + std::to_string(max_row));
    ScoringOptions o;
    o.max_row_tokens = max_row;
    o.batch_size = 2;
    const auto got = score_groups(*model, gs, o);
    size_t n = 0;
    for (size_t i = 0; i < gs.size(); ++i) {
      const int64_t P = static_cast<int64_t>(gs[i].prompt.size());
      ASSERT_EQ(got[i].prompt_logprobs.size(), static_cast<size_t>(P - 1));
      for (int64_t t = 0; t + 1 < P; ++t) {
        EXPECT_NEAR(got[i].prompt_logprobs[t], want[n].token_logprobs[t], 1e-5);
      }
      for (size_t k = 0; k < gs[i].responses.size(); ++k, ++n) {
        const auto& r = got[i].responses[k];
        ASSERT_EQ(r.token_logprobs.size(), gs[i].responses[k].size());
        for (size_t j = 0; j < r.token_logprobs.size(); ++j) {
          EXPECT_NEAR(r.token_logprobs[j], want[n].token_logprobs[P - 1 + j], 1e-5);
        }
        EXPECT_NEAR(r.logprob_sum, want[n].logprob_sum, 1e-5 * std::max(1.0, std::abs(want[n].logprob_sum)));
        EXPECT_EQ(r.num_targets, want[n].num_targets);
      }
    }
  }
}

TEST(ScoreGroups, RewardsEqualSeparateSequences) {
  LlamaModel model(tiny(ModelKind::kRewardModel));
  model->reset_parameters(7);
  const auto gs = groups(512);
  ScoringOptions o;
  const auto want = score_sequences(*model, as_sequences(gs), o);
  o.max_row_tokens = 64;
  const auto got = score_groups(*model, gs, o);
  size_t n = 0;
  for (size_t i = 0; i < gs.size(); ++i) {
    for (size_t k = 0; k < gs[i].responses.size(); ++k, ++n) {
      EXPECT_NEAR(got[i].responses[k].reward, want[n].reward, 1e-5);
    }
  }
}

TEST(ReferenceSettingsHash, EveryFieldCounts) {
  ReferenceSettings base{"ckpt", "tok", "llama3", "max_length=2048", "assistant", "float32",
                         "shared_prefix", {}};
  const auto h = reference_settings_hash(base);
  EXPECT_EQ(h.size(), 64u);
  EXPECT_EQ(reference_settings_hash(base), h);
  std::vector<std::string ReferenceSettings::*> fields = {
      &ReferenceSettings::checkpoint, &ReferenceSettings::tokenizer,
      &ReferenceSettings::chat_template, &ReferenceSettings::truncation,
      &ReferenceSettings::masks, &ReferenceSettings::dtype, &ReferenceSettings::layout};
  for (auto f : fields) {
    auto changed = base;
    changed.*f += "x";
    EXPECT_NE(reference_settings_hash(changed), h);
  }
  // Moving text between fields changes it too (fields are length-prefixed and named).
  auto moved = base;
  moved.checkpoint = "ckptt", moved.tokenizer = "ok";
  EXPECT_NE(reference_settings_hash(moved), h);
  auto extra = base;
  extra.extra["seed"] = "1";
  EXPECT_NE(reference_settings_hash(extra), h);
}

TEST(CheckpointFingerprint, FollowsTheWeights) {
  LlamaModel model(tiny(ModelKind::kCausalLM));
  model->reset_parameters(1);
  const auto a = testing::temp_dir("fp_a"), b = testing::temp_dir("fp_b");
  save_model(*model, a, at::kFloat);
  save_model(*model, b, at::kFloat);
  EXPECT_EQ(checkpoint_fingerprint(a), checkpoint_fingerprint(b));
  {
    at::NoGradGuard no_grad;
    model->parameters()[3].view({-1})[7].add_(1e-3);
  }
  save_model(*model, b, at::kFloat);
  EXPECT_NE(checkpoint_fingerprint(a), checkpoint_fingerprint(b));
  EXPECT_THROW(checkpoint_fingerprint(testing::temp_dir("fp_empty")), IoError);
  remove_tree(a);
  remove_tree(b);
}

}  // namespace
}  // namespace posttrain::core
