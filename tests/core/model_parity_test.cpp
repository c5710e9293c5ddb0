// Model parity with Hugging Face transformers on the tiny random models of
// tests/fixtures/make_fixtures.py: per-token log-probs to 1e-4 absolute, full logits, rewards;
// plus properties that must hold: padded batches and packed rows give what separate rows give,
// and activation checkpointing leaves gradients unchanged.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>

#include "common/error.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/logprobs.h"
#include "core/model/llama.h"
#include "model_test_util.h"

namespace posttrain::core {
namespace {

using testing::ids_tensor;
using testing::model_fixture;
using testing::read_json;

void expect_reference_logprobs(const std::string& name) {
  SCOPED_TRACE(name);
  auto model = load_model(model_fixture(name));
  const auto ref = read_json(model_fixture(name) + "/reference.json");
  at::NoGradGuard no_grad;
  for (const auto& seq : ref["sequences"]) {
    const auto ids = seq["input_ids"].get<std::vector<int64_t>>();
    const auto want = seq["token_logprobs"].get<std::vector<double>>();
    ForwardInputs in;
    in.input_ids = ids_tensor(ids);
    const auto got = token_logprobs(*model, in, /*chunk_tokens=*/5);
    ASSERT_EQ(got.size(1), static_cast<int64_t>(want.size()));
    for (size_t t = 0; t < want.size(); ++t) {
      EXPECT_NEAR(got[0][t].item<double>(), want[t], 1e-4) << "position " << t;
    }
  }
  const auto& seq = ref["sequences"][ref["logits_of"].get<int>()];
  ForwardInputs in;
  in.input_ids = ids_tensor(seq["input_ids"].get<std::vector<int64_t>>());
  const auto logits = model->forward(in)[0];  // [T, V]
  const auto want = seq["logits"].get<std::vector<std::vector<double>>>();
  double worst = 0;
  for (size_t t = 0; t < want.size(); ++t) {
    const auto row = at::tensor(want[t], at::kDouble);
    worst = std::max(worst, (logits[t].to(at::kDouble) - row).abs().max().item<double>());
  }
  EXPECT_LT(worst, 1e-4);
}

TEST(ModelParity, UntiedGqaLlama3RopeMatchesTransformers) {
  expect_reference_logprobs("llama3_untied");
}
TEST(ModelParity, TiedPlainRopeMatchesTransformers) { expect_reference_logprobs("tied_plain"); }
TEST(ModelParity, Bf16ShardedCheckpointMatchesTransformers) {
  expect_reference_logprobs("bf16_sharded");
}

TEST(ModelParity, BothConfigSpellingsParseAlike) {
  const auto v5 = load_config(model_fixture("llama3_untied"));
  const auto v4 = load_config(model_fixture("config_v4"));
  EXPECT_EQ(v5.rope_scaling.rope_type, "llama3");
  EXPECT_EQ(v4.rope_scaling.rope_type, "llama3");
  EXPECT_EQ(v4.rope_theta, 500000.0);
  EXPECT_EQ(v5.rope_theta, 500000.0);
  EXPECT_EQ(v4.rope_scaling.original_max_position_embeddings, 64);
  EXPECT_EQ(v5.rope_scaling.original_max_position_embeddings, 64);
  EXPECT_EQ(v4.rope_scaling.factor, v5.rope_scaling.factor);
  EXPECT_EQ(v4.num_key_value_heads, 2);
  EXPECT_EQ(v4.to_json(), v5.to_json());
}

TEST(ModelParity, PaddedBatchEqualsSeparateRows) {
  auto model = load_model(model_fixture("llama3_untied"));
  const auto ref = read_json(model_fixture("llama3_untied") + "/reference.json");
  std::vector<std::vector<int64_t>> seqs;
  for (const auto& s : ref["sequences"]) seqs.push_back(s["input_ids"].get<std::vector<int64_t>>());
  int64_t T = 0;
  for (const auto& s : seqs) T = std::max<int64_t>(T, s.size());
  const int64_t B = seqs.size();
  auto ids = at::zeros({B, T}, at::kLong), mask = at::zeros({B, T}, at::kLong);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = seqs[b].size();
    ids[b].narrow(0, 0, n).copy_(at::tensor(seqs[b], at::kLong));
    mask[b].narrow(0, 0, n).fill_(1);
  }
  at::NoGradGuard no_grad;
  const auto got = token_logprobs(*model, ForwardInputs{ids, {}, {}, mask});  // [B, T-1]
  for (int64_t b = 0; b < B; ++b) {
    const auto want = ref["sequences"][b]["token_logprobs"].get<std::vector<double>>();
    for (size_t t = 0; t < want.size(); ++t) EXPECT_NEAR(got[b][t].item<double>(), want[t], 1e-4);
    for (int64_t t = want.size(); t < T - 1; ++t) EXPECT_EQ(got[b][t].item<double>(), 0.0);
  }
}

TEST(ModelParity, PackedRowEqualsSeparateDocuments) {
  auto model = load_model(model_fixture("llama3_untied"));
  const auto ref = read_json(model_fixture("llama3_untied") + "/reference.json");
  std::vector<int64_t> packed, docs;
  std::vector<std::vector<double>> want;
  for (int i = 0; i < 3; ++i) {
    const auto ids = ref["sequences"][i]["input_ids"].get<std::vector<int64_t>>();
    packed.insert(packed.end(), ids.begin(), ids.end());
    docs.insert(docs.end(), ids.size(), i);
    want.push_back(ref["sequences"][i]["token_logprobs"].get<std::vector<double>>());
  }
  ForwardInputs in;
  in.input_ids = ids_tensor(packed);
  in.document_ids = ids_tensor(docs);  // positions restart per document by default
  at::NoGradGuard no_grad;
  const auto got = token_logprobs(*model, in)[0];
  size_t offset = 0;
  for (const auto& w : want) {
    for (size_t t = 0; t < w.size(); ++t) {
      EXPECT_NEAR(got[offset + t].item<double>(), w[t], 1e-4);
    }
    if (offset + w.size() < static_cast<size_t>(got.size(0))) {
      EXPECT_EQ(got[offset + w.size()].item<double>(), 0.0);  // across a document boundary
    }
    offset += w.size() + 1;
  }
  // Explicit position_ids give the same result.
  in.position_ids = at::cat({at::arange(2), at::arange(7), at::arange(19)}).view({1, -1});
  EXPECT_TRUE(at::allclose(token_logprobs(*model, in)[0], got, 0, 1e-6));
}

TEST(ModelParity, RewardModelMatchesTransformers) {
  auto model = load_model(model_fixture("reward"));
  const auto ref = read_json(model_fixture("reward") + "/reference.json");
  const auto ids = ref["input_ids"].get<std::vector<std::vector<int64_t>>>();
  const auto mask = ref["attention_mask"].get<std::vector<std::vector<int64_t>>>();
  const int64_t B = ids.size(), T = ids[0].size();
  std::vector<int64_t> flat_ids, flat_mask;
  for (int64_t b = 0; b < B; ++b) {
    flat_ids.insert(flat_ids.end(), ids[b].begin(), ids[b].end());
    flat_mask.insert(flat_mask.end(), mask[b].begin(), mask[b].end());
  }
  at::NoGradGuard no_grad;
  const auto id_t = at::tensor(flat_ids, at::kLong).view({B, T});
  const auto with_mask =
      model->rewards({id_t, {}, {}, at::tensor(flat_mask, at::kLong).view({B, T})});
  const auto by_pad = model->forward({id_t, {}, {}, {}});  // pad_token_id finds the last token
  const auto want = ref["rewards"].get<std::vector<double>>();
  const auto alone = ref["rewards_alone"].get<std::vector<double>>();
  ASSERT_EQ(with_mask.sizes(), at::IntArrayRef({B}));
  for (int64_t b = 0; b < B; ++b) {
    EXPECT_NEAR(with_mask[b].item<double>(), want[b], 1e-4);
    EXPECT_NEAR(by_pad[b].item<double>(), want[b], 1e-4);
    EXPECT_NEAR(with_mask[b].item<double>(), alone[b], 1e-4);
  }
  EXPECT_THROW(model->lm_head_weight(), UsageError);
  EXPECT_THROW(token_logprobs(*model, {id_t, {}, {}, {}}), UsageError);
}

TEST(ModelParity, ActivationCheckpointingKeepsGradients) {
  auto model = load_model(model_fixture("llama3_untied"));
  const auto ids = at::randint(1, 288, {2, 9}, at::kLong);
  auto grads_of = [&](bool checkpoint) {
    model->zero_grad();
    model->set_activation_checkpointing(checkpoint);
    const auto lp = token_logprobs(*model, {ids, {}, {}, {}}, 4);
    lp.sum().backward();
    std::vector<at::Tensor> g;
    for (const auto& p : model->parameters()) g.push_back(p.grad().clone());
    return std::make_pair(lp.detach(), g);
  };
  const auto [lp0, g0] = grads_of(false);
  const auto [lp1, g1] = grads_of(true);
  EXPECT_TRUE(at::allclose(lp0, lp1, 0, 1e-6));
  ASSERT_EQ(g0.size(), g1.size());
  for (size_t i = 0; i < g0.size(); ++i) {
    EXPECT_TRUE(at::allclose(g0[i], g1[i], 1e-4, 1e-7)) << "parameter " << i;
    EXPECT_GT(g0[i].abs().sum().item<double>(), 0.0) << "parameter " << i;
  }
}

// Under bf16 autocast (CPU's here) the recomputation in backward must run in bf16 as the forward
// did: then the gradients are those of the plain run, bit for bit up to summation order; a
// float32 recomputation would differ at bf16's rounding (~1e-2 relative).
TEST(ModelParity, ActivationCheckpointingRecomputesUnderTheForwardsAutocast) {
  auto model = load_model(model_fixture("llama3_untied"));
  const auto ids = at::randint(1, 288, {2, 16}, at::kLong);
  auto grads_of = [&](bool checkpoint) {
    model->zero_grad();
    model->set_activation_checkpointing(checkpoint);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCPU, true);
    const auto lp = token_logprobs(*model, {ids, {}, {}, {}}, 4);
    at::autocast::set_autocast_enabled(at::kCPU, false);
    at::autocast::clear_cache();
    lp.sum().backward();
    std::vector<at::Tensor> g;
    for (const auto& p : model->parameters()) g.push_back(p.grad().clone());
    return g;
  };
  const auto g0 = grads_of(false);
  const auto g1 = grads_of(true);
  ASSERT_EQ(g0.size(), g1.size());
  for (size_t i = 0; i < g0.size(); ++i) {
    const double rel = ((g0[i] - g1[i]).norm() / (g0[i].norm() + 1e-30)).item<double>();
    EXPECT_LT(rel, 1e-3) << "parameter " << i;
  }
}

TEST(ModelParity, RejectsTokenIdsOutsideTheVocabulary) {
  auto model = load_model(model_fixture("tied_plain"));
  EXPECT_THROW(model->forward({ids_tensor({1, 2, 272}), {}, {}, {}}), UsageError);
  EXPECT_THROW(model->forward({ids_tensor({-1, 2}), {}, {}, {}}), UsageError);
}

}  // namespace
}  // namespace posttrain::core
