// Pair rows and the DPO loss on a model: the one-pass shared-prompt row gives the log-prob sums
// and gradients of separate rows (prompt + chosen, prompt + rejected) to 1e-5 in float32, packed
// or not; masked (formatting) target tokens change neither the DPO term nor its gradient; the
// loss output carries TRL's metrics consistent with the pair losses.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "core/logprobs.h"
#include "core/model/llama.h"
#include "dpo/dpo_loss.h"
#include "dpo/pair_rows.h"

namespace posttrain::dpo {
namespace {

core::LlamaModel tiny_model(int64_t vocab) {
  at::set_num_threads(1);
  core::LlamaConfig c = core::preset_config("tiny");
  c.vocab_size = vocab;
  c.num_hidden_layers = 2;
  core::LlamaModel m(c);
  m->reset_parameters(7);
  return m;
}

std::vector<TokenizedPair> some_pairs(const core::Tokenizer& tok) {
  const char* qs[] = {"What is 2+2?", "Name a colour.", "Say hi"};
  const char* cs[] = {"4", "Blue, like the sky.", "hi there"};
  const char* rs[] = {"5, I think", "Red", "no"};
  std::vector<TokenizedPair> out;
  for (int i = 0; i < 3; ++i) {
    out.push_back(tokenize_chat_pair(tok, core::ChatFormat::kLlama3, {{"user", qs[i], -1}},
                                     {{"assistant", cs[i], -1}}, {{"assistant", rs[i], -1}},
                                     MaskOptions{}, Location{"t", i + 1, ""}));
  }
  return out;
}

// Σ log p of the masked response tokens in the plain row prompt + response.
at::Tensor separate_sum(core::LlamaModelImpl& model, const TokenizedPair& p, bool chosen) {
  const auto& resp = chosen ? p.chosen : p.rejected;
  const auto& mask = chosen ? p.chosen_mask : p.rejected_mask;
  std::vector<int64_t> ids = p.prompt;
  ids.insert(ids.end(), resp.begin(), resp.end());
  const int64_t P = static_cast<int64_t>(p.prompt.size()), L = static_cast<int64_t>(ids.size());
  auto targets = at::full({1, L}, core::kIgnoreTarget, at::kLong);
  for (int64_t j = 0; j < static_cast<int64_t>(resp.size()); ++j) {
    if (mask[j]) targets[0][P - 1 + j] = resp[j];
  }
  core::ForwardInputs in;
  in.input_ids = at::tensor(ids, at::kLong).unsqueeze(0);
  return core::target_logprobs(model, model.hidden_states(in), targets).sum();
}

std::vector<at::Tensor> grads(core::LlamaModel& m) {
  std::vector<at::Tensor> g;
  for (auto& p : m->parameters()) {
    g.push_back(p.grad().defined() ? p.grad().clone() : at::zeros_like(p));
    if (p.grad().defined()) p.grad().zero_();
  }
  return g;
}

double max_diff(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>());
  }
  return worst;
}

TEST(DpoRows, SharedPromptRowsEqualSeparateRows) {
  auto tok = core::Tokenizer::byte_level();
  auto model = tiny_model(tok.vocab_size());
  const auto pairs = some_pairs(tok);
  std::vector<core::SharedPrefixDocument> docs;
  for (const auto& p : pairs) docs.push_back(pair_document(p));
  // Row 0 packs pairs 0 and 2, row 1 holds pair 1 (padded): slots come in row order.
  const std::vector<std::vector<int64_t>> rows = {{0, 2}, {1}};
  const std::vector<int64_t> order = {0, 2, 1};
  const auto mb = collate_pair_rows(pairs, docs, nullptr, rows, 0);
  EXPECT_EQ(mb.num_terms, 3);
  EXPECT_TRUE(mb.rows_independent);
  const auto w = at::tensor({0.3f, -0.7f, 1.1f, 0.2f, -0.4f, 0.9f}).view({3, 2});  // any weights
  const auto sums = pair_logp_sums(*model, mb, 16, core::kDefaultKeepLogitsBytes);  // [3, 2]
  (sums * w).sum().backward();
  const auto shared_grads = grads(model);

  at::Tensor expected = at::zeros({3, 2});
  at::Tensor total = at::zeros({});
  for (int k = 0; k < 3; ++k) {
    for (int side = 0; side < 2; ++side) {
      const auto s = separate_sum(*model, pairs[order[k]], side == 0);
      expected[k][side] = s.detach();
      total = total + s * w[k][side];
    }
  }
  total.backward();
  const auto separate_grads = grads(model);
  EXPECT_LT((sums.detach() - expected).abs().max().item<double>(), 1e-5)
      << sums << "\n" << expected;
  EXPECT_LT(max_diff(shared_grads, separate_grads), 1e-5);
}

// Reference values of the pairs for a loss (any numbers: the loss is what is compared).
std::vector<RefValues> refs_of(const std::vector<TokenizedPair>& pairs) {
  std::vector<RefValues> refs;
  for (const auto& p : pairs) {
    refs.push_back({-1.5 * p.chosen_count(), -1.2 * p.rejected_count(), p.chosen_count(),
                    p.rejected_count()});
  }
  return refs;
}

core::LossOutput loss_of(core::LlamaModel& model, const std::vector<TokenizedPair>& pairs,
                         double rpo_alpha = 0.0) {
  std::vector<core::SharedPrefixDocument> docs;
  for (const auto& p : pairs) docs.push_back(pair_document(p));
  const auto refs = refs_of(pairs);
  const auto mb = collate_pair_rows(pairs, docs, &refs, {{0, 1, 2}}, 0);
  DpoLossConfig cfg;
  cfg.rpo_alpha = rpo_alpha;
  return dpo_loss(*model, mb, cfg);
}

TEST(DpoRows, MaskedTokensChangeNeitherTheDpoTermNorItsGradient) {
  auto tok = core::Tokenizer::byte_level();
  auto model = tiny_model(tok.vocab_size());
  auto pairs = some_pairs(tok);
  const auto base = loss_of(model, pairs);
  base.sum.backward();
  const auto base_grads = grads(model);
  // Replace every masked response token (the end-of-turn token) by another token.
  auto changed = pairs;
  int replaced = 0;
  for (auto& p : changed) {
    for (size_t j = 0; j < p.chosen.size(); ++j) {
      if (!p.chosen_mask[j]) p.chosen[j] = 'Z', ++replaced;
    }
    for (size_t j = 0; j < p.rejected.size(); ++j) {
      if (!p.rejected_mask[j]) p.rejected[j] = 'Z', ++replaced;
    }
  }
  ASSERT_EQ(replaced, 6);
  const auto after = loss_of(model, changed);
  after.sum.backward();
  EXPECT_NEAR(after.sum.item<double>(), base.sum.item<double>(), 1e-6);
  EXPECT_LT(max_diff(grads(model), base_grads), 1e-7);

  // Without the mask the same change moves the DPO term (so the comparison above can fail).
  MaskOptions off;
  off.mask_format_tokens = false;
  std::vector<TokenizedPair> unmasked, unmasked_changed;
  for (const auto& p : pairs) {
    auto q = p;
    q.chosen_mask.assign(q.chosen.size(), 1);
    q.rejected_mask.assign(q.rejected.size(), 1);
    unmasked.push_back(q);
    q.chosen.back() = 'Z';
    q.rejected.back() = 'Z';
    unmasked_changed.push_back(q);
  }
  at::NoGradGuard no_grad;
  EXPECT_GT(std::abs(loss_of(model, unmasked).sum.item<double>() -
                     loss_of(model, unmasked_changed).sum.item<double>()),
            1e-4);
}

TEST(DpoRows, LossOutputCarriesTrlMetricsAndTheNllTerm) {
  auto tok = core::Tokenizer::byte_level();
  auto model = tiny_model(tok.vocab_size());
  const auto pairs = some_pairs(tok);
  at::NoGradGuard no_grad;
  const auto out = loss_of(model, pairs, 0.2);
  // Recompute from the pair sums with loss.h's formulas.
  std::vector<core::SharedPrefixDocument> docs;
  for (const auto& p : pairs) docs.push_back(pair_document(p));
  const auto mb = collate_pair_rows(pairs, docs, nullptr, {{0, 1, 2}}, 0);
  const auto sums = pair_logp_sums(*model, mb, 4096, core::kDefaultKeepLogitsBytes);
  const auto refs = refs_of(pairs);
  at::Tensor rc = at::zeros({3}), rr = at::zeros({3});
  for (int k = 0; k < 3; ++k) rc[k] = refs[k].chosen, rr[k] = refs[k].rejected;
  const auto pl = pair_losses(sums.select(1, 0), sums.select(1, 1), rc, rr, LossOptions{});
  EXPECT_NEAR(out.sum.item<double>(), pl.losses.sum().item<double>(), 1e-5);
  const auto& m = out.metric_sums;
  EXPECT_NEAR(m.at("rewards/chosen").item<double>(), pl.chosen_rewards.sum().item<double>(), 1e-5);
  EXPECT_NEAR(m.at("rewards/margins").item<double>(),
              (pl.chosen_rewards - pl.rejected_rewards).sum().item<double>(), 1e-5);
  EXPECT_NEAR(m.at("logps/chosen").item<double>(), sums.select(1, 0).sum().item<double>(), 1e-4);
  EXPECT_EQ(out.metric_norms.at("nll_loss"), "target_tokens");
  // The NLL term: 0.2 x the NLL sum over chosen's SFT targets (content + end-of-turn).
  ASSERT_TRUE(out.extra_sums.count("target_tokens"));
  EXPECT_NEAR(out.extra_sums.at("target_tokens").item<double>(),
              0.2 * m.at("nll_loss").item<double>(), 1e-5);
  int64_t nll_targets = 0;
  for (const auto& p : pairs) nll_targets += p.nll_count();
  EXPECT_EQ(mb.counts.at("target_tokens"), nll_targets);
  EXPECT_EQ(nll_targets, pairs[0].chosen_count() + pairs[1].chosen_count() +
                             pairs[2].chosen_count() + 3);  // content + one end token each
}

}  // namespace
}  // namespace posttrain::dpo
