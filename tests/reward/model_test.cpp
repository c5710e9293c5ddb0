// The reward model on ranking rows: Llama 3's one-row layout gives the rewards and gradients of
// separate rows; padding never changes a reward; a causal LM starts with a seeded fresh head;
// the pad token is reserved, never an end token.
#include "reward/model.h"

#include <gtest/gtest.h>

#include "common/files.h"
#include <torch/torch.h>

#include <filesystem>

#include "core/checkpoint/hf_checkpoint.h"
#include "core/model/llama_config.h"
#include "reward/rows.h"

namespace fs = std::filesystem;

namespace posttrain::reward {
namespace {

core::LlamaConfig small_config() {
  core::LlamaConfig c = core::preset_config("tiny");
  c.vocab_size = 300;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.kind = core::ModelKind::kRewardModel;
  c.pad_token_id = 299;
  return c;
}

core::LlamaModel small_model(uint64_t seed) {
  core::LlamaModel m(small_config());
  m->reset_parameters(seed);
  // Hugging Face's head is small (std 0.02); scale it so rewards differ visibly.
  torch::NoGradGuard g;
  m->score_weight().mul_(20);
  return m;
}

std::vector<int64_t> ids(int64_t n, int64_t start) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < n; ++i) v.push_back((start + 37 * i) % 290 + 1);
  return v;
}

// Two rankings: a prompt four times longer than its three responses, and a two-response one.
std::vector<RankedTokens> rankings() {
  RankedTokens a;
  a.prompt = ids(16, 3);
  a.responses = {ids(4, 100), ids(5, 150), ids(3, 200)};
  a.pairs = {{0, 1, 1.0f}, {0, 2, 0.5f}, {1, 2, 0.0f}};
  RankedTokens b;
  b.prompt = ids(7, 11);
  b.responses = {ids(2, 50), ids(6, 60)};
  b.pairs = {{0, 1, 0.0f}};
  return {a, b};
}

std::vector<at::Tensor> grads_of(core::LlamaModel& m, const core::MicroBatch& mb) {
  m->zero_grad();
  PairwiseLossOptions o;
  o.use_margin = true;
  o.center_coefficient = 0.1;
  reward_loss(*m, mb, o).sum.backward();
  std::vector<at::Tensor> g;
  for (const auto& p : m->parameters()) g.push_back(p.grad().clone());
  return g;
}

TEST(RewardModel, OneRowLayoutEqualsSeparateRows) {
  auto m = small_model(5);
  const auto data = rankings();
  RowOptions sep, one;
  sep.layout = Layout::kSeparate;
  one.layout = Layout::kOneRow;
  sep.pad_id = one.pad_id = 299;
  one.seed = 4;
  const auto mb_sep = collate_rankings(data, {0, 1}, sep);
  const auto mb_one = collate_rankings(data, {0, 1}, one);
  EXPECT_EQ(mb_sep.num_terms, 4);
  EXPECT_EQ(mb_one.num_terms, 4);
  // The one-row layout holds each prompt once: 16 + 4 + 5 + 3 and 7 + 2 + 6 real tokens.
  EXPECT_EQ(mb_one.num_tokens, 28 + 15);
  EXPECT_EQ(mb_sep.num_tokens, (20 + 21 + 19) + (9 + 13));
  const auto r_sep = ranking_rewards(*m, mb_sep);
  const auto r_one = ranking_rewards(*m, mb_one);
  ASSERT_EQ(r_sep.sizes(), r_one.sizes());
  // Slot 2 of ranking b is padding (no pair reads it); every real slot agrees.
  const auto real = torch::tensor({1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 0.0f}).view({2, 3});
  EXPECT_LT(((r_sep - r_one) * real).abs().max().item<double>(), 1e-5) << r_sep << r_one;
  EXPECT_GT((r_sep[0][0] - r_sep[0][1]).abs().item<double>(), 1e-3);
  const auto g_sep = grads_of(m, mb_sep);
  const auto g_one = grads_of(m, mb_one);
  ASSERT_EQ(g_sep.size(), g_one.size());
  double worst = 0, scale = 0;
  for (size_t i = 0; i < g_sep.size(); ++i) {
    worst = std::max(worst, (g_sep[i] - g_one[i]).abs().max().item<double>());
    scale = std::max(scale, g_sep[i].abs().max().item<double>());
  }
  EXPECT_GT(scale, 1e-4);  // the gradients are not trivially zero
  // float32: 1e-5 relative to the largest gradient entry (rewards here are O(5)).
  EXPECT_LT(worst, 1e-5 * std::max(1.0, scale)) << "scale " << scale;
}

TEST(RewardModel, OneRowShufflesResponsesBySeedAndReadsEachAtItsEnd) {
  const auto data = rankings();
  RowOptions one;
  one.layout = Layout::kOneRow;
  one.pad_id = 299;
  // Different seeds lay the responses out in different orders (some seed among a few does).
  bool differs = false;
  for (uint64_t s = 1; s < 6 && !differs; ++s) {
    differs = segment_order(0, 3, s) != segment_order(0, 3, 0);
  }
  EXPECT_TRUE(differs);
  EXPECT_EQ(segment_order(0, 3, 9), segment_order(0, 3, 9));
  for (uint64_t s : {0, 1, 2, 3}) {
    one.seed = s;
    const auto mb = collate_rankings(data, {0}, one);
    const auto idx = mb.tensors.at("reward_index");
    const auto tok = mb.tensors.at("input_ids");
    for (int k = 0; k < 3; ++k) {
      // The token at reward_index[k] is response k's last token.
      EXPECT_EQ(tok[0][idx[0][k].item<int64_t>()].item<int64_t>(), data[0].responses[k].back());
    }
  }
}

TEST(RewardModel, PaddingNeverChangesAReward) {
  auto m = small_model(7);
  const auto data = rankings();
  for (Layout layout : {Layout::kSeparate, Layout::kOneRow}) {
    RowOptions o;
    o.layout = layout;
    o.pad_id = 299;
    torch::NoGradGuard g;
    const auto alone = ranking_rewards(*m, collate_rankings(data, {1}, o));    // [1, 2]
    const auto padded = ranking_rewards(*m, collate_rankings(data, {0, 1}, o));  // [2, 3]
    EXPECT_LT((alone[0] - padded[1].narrow(0, 0, 2)).abs().max().item<double>(), 1e-5);
  }
}

TEST(RewardModel, RewardsAreTheModelsLastTokenRewards) {
  // ranking_rewards reads the same value as LlamaModelImpl::rewards on each sequence alone.
  auto m = small_model(9);
  const auto data = rankings();
  RowOptions o;
  o.layout = Layout::kSeparate;
  o.pad_id = 299;
  torch::NoGradGuard g;
  const auto r = ranking_rewards(*m, collate_rankings(data, {0}, o));
  for (int k = 0; k < 3; ++k) {
    std::vector<int64_t> seq = data[0].prompt;
    seq.insert(seq.end(), data[0].responses[k].begin(), data[0].responses[k].end());
    core::ForwardInputs in;
    in.input_ids = torch::tensor(seq, torch::kLong).view({1, -1});
    EXPECT_NEAR(m->rewards(in).item<double>(), r[0][k].item<double>(), 1e-5);
  }
}

TEST(RewardModel, CausalLmStartsWithASeededFreshHead) {
  const auto dir = fs::temp_directory_path() / ("posttrain_reward_lm_" + std::to_string(getpid()));
  posttrain::remove_tree((dir).string());
  core::LlamaConfig c = small_config();
  c.kind = core::ModelKind::kCausalLM;
  c.pad_token_id.reset();
  c.initializer_range = 0.05;
  core::init_checkpoint(c, dir.string(), 3, at::kFloat);
  auto a = load_reward_model(dir.string(), 298, at::kCPU, 11);
  auto b = load_reward_model(dir.string(), 298, at::kCPU, 11);
  auto d = load_reward_model(dir.string(), 298, at::kCPU, 12);
  EXPECT_TRUE(a->is_reward_model());
  EXPECT_EQ(a->config().pad_token_id, 298);
  EXPECT_TRUE(torch::equal(a->score_weight(), b->score_weight()));
  EXPECT_FALSE(torch::equal(a->score_weight(), d->score_weight()));
  // std of 64 draws from N(0, 0.05): within 30% of 0.05.
  EXPECT_NEAR(a->score_weight().std().item<double>(), 0.05, 0.015);
  // The backbone is the causal LM's.
  auto lm = core::load_model(dir.string());
  auto la = core::state_dict(*lm), ra = core::state_dict(*a);
  EXPECT_TRUE(torch::equal(la[0].second, ra[0].second));  // embed_tokens
  posttrain::remove_tree((dir).string());
}

TEST(RewardModel, PadIsReservedNeverAnEndToken) {
  const auto tok = core::Tokenizer::byte_level();
  const int64_t pad = reward_pad_id(tok, std::nullopt);
  EXPECT_EQ(pad, *tok.token_id("<|finetune_right_pad_id|>"));
  EXPECT_THROW(reward_pad_id(tok, *tok.token_id("<|eot_id|>")), InputError);
  EXPECT_THROW(reward_pad_id(tok, tok.eos_ids().front()), InputError);
  EXPECT_THROW(reward_pad_id(tok, 100000), InputError);
  EXPECT_EQ(reward_pad_id(tok, 100), 100);  // a configured id wins (the data must not hold it)
}

}  // namespace
}  // namespace posttrain::reward
