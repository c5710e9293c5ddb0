// Shared-prefix rows (core/data/shared_prefix.h, ForwardInputs::segment_ids): the layout by hand,
// and the model on such rows against the same prompt + response run as separate rows, one per
// response: per-token log-probs (prompt and responses), per-segment sums, rewards, and the
// gradients of a weighted sum of them, to 1e-5 in float32. Rows hold two and three segments,
// GQA (tiny: 4 heads, 2 kv heads), a second document packed behind, and padding; each case runs
// through our CPU attention kernel and through ATen's attention with a dense mask, and on CUDA
// when there is one.
#include "core/data/shared_prefix.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/error.h"
#include "core/logprobs.h"
#include "core/model/attention_spans.h"
#include "core/model/llama.h"
#include "kernels/causal_attention.h"

namespace posttrain::core {
namespace {

using Ids = std::vector<int64_t>;

TEST(SharedPrefixDocument, LayoutByHand) {
  // prompt [10, 11, 12]; responses [20, 21] (only 20 a target) and [30].
  const auto d = shared_prefix_document({10, 11, 12}, {{20, 21}, {30}}, {{1, 0}, {1}});
  // prefix = prompt[0..1]; each segment repeats prompt[2] at position 2, then its response.
  EXPECT_EQ(d.ids, (Ids{10, 11, 12, 20, 21, 12, 30}));
  EXPECT_EQ(d.positions, (Ids{0, 1, 2, 3, 4, 2, 3}));
  EXPECT_EQ(d.segment_ids, (Ids{0, 0, 1, 1, 1, 2, 2}));
  // 12 predicts 20 (masked in); 20 would predict 21 (masked out); segment ends predict nothing.
  EXPECT_EQ(d.targets, (Ids{-100, -100, 20, -100, -100, 30, -100}));
  ASSERT_EQ(d.segments.size(), 2u);
  EXPECT_EQ(d.segments[0].begin, 2);
  EXPECT_EQ(d.segments[0].last(), 4);
  EXPECT_EQ(d.segments[1].begin, 5);
  EXPECT_EQ(d.segments[1].end, 7);
  // A one-token prompt has an empty prefix; an empty response is its segment's single token.
  const auto e = shared_prefix_document({7}, {{}, {8}});
  EXPECT_EQ(e.ids, (Ids{7, 7, 8}));
  EXPECT_EQ(e.positions, (Ids{0, 0, 1}));
  EXPECT_EQ(e.targets, (Ids{-100, 8, -100}));
}

TEST(SharedPrefixDocument, RejectsWhatItCannotLayOut) {
  EXPECT_THROW(shared_prefix_document({}, {{1}}), UsageError);
  EXPECT_THROW(shared_prefix_document({1}, {}), UsageError);
  EXPECT_THROW(shared_prefix_document({1}, {{2, 3}}, {{1}}), UsageError);
  EXPECT_THROW(shared_prefix_document({1}, {{2}, {3}}, {{1}}), UsageError);
}

TEST(SharedPrefixBatch, PacksAndPads) {
  std::vector<SharedPrefixDocument> docs = {shared_prefix_document({1, 2}, {{3}, {4, 5}}),
                                            shared_prefix_document({6}, {{7}}),
                                            shared_prefix_document({8, 9, 10}, {{11}})};
  // Lengths 6, 2, 4: with max 8 the first two share a row, the third goes to the next.
  const auto rows = pack_shared_prefix(docs, {0, 1, 2}, 8);
  ASSERT_EQ(rows, (std::vector<Ids>{{0, 1}, {2}}));
  const auto b = collate_shared_prefix(docs, rows, /*pad_id=*/0);
  EXPECT_TRUE(b.input_ids.equal(at::tensor({1, 2, 3, 2, 4, 5, 6, 7,  //
                                            8, 9, 10, 11, 0, 0, 0, 0})
                                    .view({2, 8})));
  EXPECT_TRUE(b.document_ids.equal(at::tensor({0, 0, 0, 0, 0, 0, 1, 1,  //
                                               0, 0, 0, 0, 1, 1, 1, 1})
                                       .view({2, 8})));
  EXPECT_TRUE(b.segment_ids.equal(at::tensor({0, 1, 1, 2, 2, 2, 1, 1,  //
                                              0, 0, 1, 1, 0, 0, 0, 0})
                                      .view({2, 8})));
  EXPECT_TRUE(b.position_ids.equal(at::tensor({0, 1, 2, 1, 2, 3, 0, 1,  //
                                               0, 1, 2, 3, 0, 1, 2, 3})
                                       .view({2, 8})));
  EXPECT_TRUE(b.segment_index.equal(at::tensor({-1, 0, 0, 1, 1, 1, 2, 2,  //
                                                -1, -1, 3, 3, -1, -1, -1, -1})
                                        .view({2, 8})));
  ASSERT_TRUE(b.attention_mask.defined());
  EXPECT_EQ(b.attention_mask.sum().item<int64_t>(), 12);
  EXPECT_EQ(b.num_tokens, 12);
  ASSERT_EQ(b.segments.size(), 4u);
  EXPECT_EQ(b.segments[3].document, 2);
  EXPECT_EQ(b.segments[3].row, 1);
  EXPECT_TRUE(b.segment_last.equal(at::tensor({2, 5, 7, 8 + 3})));
  // The same last tokens from the tensors alone.
  const auto last =
      segment_last_tokens(b.segment_ids, b.document_ids, b.attention_mask);  // [2, 3]
  EXPECT_TRUE(last.equal(at::tensor({2, 5, 7, 3, -1, -1}).view({2, 3})));
  // Positions the model would give without position_ids are the ones written (padding's do not
  // matter: it sees only itself).
  const auto spans = segment_spans(b.segment_ids, b.document_ids, b.attention_mask);
  const auto real = b.attention_mask.to(at::kBool);
  EXPECT_TRUE(span_positions(spans).masked_select(real).equal(b.position_ids.masked_select(real)));
}

TEST(SegmentSpans, RejectsBrokenLayouts) {
  auto spans = [](Ids seg) {
    return segment_spans(at::tensor(seg).unsqueeze(0), {}, {});
  };
  EXPECT_NO_THROW(spans({0, 0, 1, 1, 2}));
  EXPECT_NO_THROW(spans({1, 2, 3}));           // no prefix
  EXPECT_THROW(spans({0, 1, 0}), UsageError);  // prefix after a segment
  EXPECT_THROW(spans({0, 1, 2, 1}), UsageError);  // segment 1 in two runs
  EXPECT_THROW(spans({0, -1}), UsageError);
  // Documents: each one run; segment ids restart per document.
  const auto seg = at::tensor({0, 1, 0, 1}).unsqueeze(0);
  EXPECT_NO_THROW(segment_spans(seg, at::tensor({0, 0, 1, 1}).unsqueeze(0), {}));
  EXPECT_THROW(segment_spans(seg, at::tensor({0, 1, 0, 1}).unsqueeze(0), {}), UsageError);
}

// One prompt with its responses and, per response token, a weight for the gradient checks.
struct Example {
  Ids prompt;
  std::vector<Ids> responses;
};

std::vector<Example> examples(int64_t vocab) {
  at::manual_seed(21);
  auto draw = [&](int64_t n) {
    const auto t = at::randint(0, vocab, {n}, at::kLong);
    return Ids(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n);
  };
  // Three responses, two, and two again; prompts longer than responses (as in preference data),
  // one response empty-ish (one token).
  return {{draw(41), {draw(9), draw(17), draw(1)}},
          {draw(12), {draw(8), draw(5)}},
          {draw(30), {draw(70), draw(6)}}};
}

// Row 0: examples 0 and 1 packed (70 + 26 tokens, padded to 107); row 1: example 2 (107).
SharedPrefixBatch shared_batch(const std::vector<Example>& ex) {
  std::vector<SharedPrefixDocument> docs;
  for (const auto& e : ex) docs.push_back(shared_prefix_document(e.prompt, e.responses));
  return collate_shared_prefix(docs, {{0, 1}, {2}}, /*pad_id=*/0);
}

// Fixed random weights per (example, response, token) for the weighted sums whose gradients
// are compared: prompt log-prob weights per example, response-token weights per segment.
struct Weights {
  std::vector<at::Tensor> prompt;                  // [P - 1] per example
  std::vector<std::vector<at::Tensor>> response;   // [len] per response
  std::vector<std::vector<double>> reward;         // per response
};

Weights weights(const std::vector<Example>& ex) {
  at::manual_seed(5);
  Weights w;
  for (const auto& e : ex) {
    w.prompt.push_back(at::randn({static_cast<int64_t>(e.prompt.size()) - 1}));
    w.response.emplace_back();
    w.reward.emplace_back();
    for (const auto& r : e.responses) {
      w.response.back().push_back(at::randn({static_cast<int64_t>(r.size())}));
      w.reward.back().push_back(at::randn({1}).item<double>());
    }
  }
  return w;
}

// What is compared: per-token log-probs of each prompt (predicting prompt[1..]) and of each
// response, per-segment sums, and the parameter gradients of a weighted sum of all of them.
struct Scored {
  std::vector<at::Tensor> prompt_lp;                 // [P - 1] per example
  std::vector<std::vector<at::Tensor>> response_lp;  // [len] per response
  std::vector<std::vector<double>> sums;             // per response
  std::vector<at::Tensor> grads;                     // per parameter
};

std::vector<at::Tensor> take_grads(LlamaModel& model) {
  std::vector<at::Tensor> g;
  for (const auto& p : model->parameters()) g.push_back(p.grad().detach().cpu().clone());
  model->zero_grad();
  return g;
}

// Reference: each prompt + response alone in a row of its own.
Scored separate_logprobs(LlamaModel& model, const std::vector<Example>& ex, const Weights& w,
                         at::Device dev) {
  Scored s;
  at::Tensor loss = at::zeros({}, at::TensorOptions().device(dev));
  for (size_t i = 0; i < ex.size(); ++i) {
    const int64_t P = static_cast<int64_t>(ex[i].prompt.size());
    s.response_lp.emplace_back();
    s.sums.emplace_back();
    for (size_t k = 0; k < ex[i].responses.size(); ++k) {
      Ids ids = ex[i].prompt;
      ids.insert(ids.end(), ex[i].responses[k].begin(), ex[i].responses[k].end());
      const int64_t n = static_cast<int64_t>(ex[i].responses[k].size());
      const auto lp = token_logprobs(*model, {at::tensor(ids).unsqueeze(0).to(dev), {}, {}, {}})
                          .squeeze(0);  // [P + n - 1]
      const auto resp = lp.narrow(0, P - 1, n);
      // The prompt's log-probs: the same in every separate row; counted once, from the first.
      if (k == 0) {
        const auto prompt = lp.narrow(0, 0, P - 1);
        s.prompt_lp.push_back(prompt.detach().cpu());
        loss = loss + (prompt * w.prompt[i].to(dev)).sum();
      }
      s.response_lp.back().push_back(resp.detach().cpu());
      s.sums.back().push_back(resp.sum().item<double>());
      loss = loss + (resp * w.response[i][k].to(dev)).sum();
    }
  }
  loss.backward();
  s.grads = take_grads(model);
  return s;
}

// The same from one shared-prefix batch: token_logprobs over the row for the per-token values,
// and target_logprobs against the batch's targets for the per-segment sums.
Scored shared_logprobs(LlamaModel& model, const std::vector<Example>& ex, const Weights& w,
                       at::Device dev, bool give_positions) {
  const auto batch = shared_batch(ex);
  auto in = batch.forward_inputs();
  if (!give_positions) in.position_ids = at::Tensor();
  for (auto* t : {&in.input_ids, &in.position_ids, &in.document_ids, &in.attention_mask,
                  &in.segment_ids}) {
    if (t->defined()) *t = t->to(dev);
  }
  const auto lp = token_logprobs(*model, in);  // [B, T - 1]
  const auto sums = segment_sums(
      target_logprobs(*model, model->hidden_states(in), batch.targets.to(dev)),
      batch.segment_index, static_cast<int64_t>(batch.segments.size()));  // [N]
  Scored s;
  at::Tensor loss = at::zeros({}, at::TensorOptions().device(dev));
  s.response_lp.resize(ex.size());
  s.sums.resize(ex.size());
  size_t n_seg = 0;
  int64_t row = 0, base = 0;
  for (size_t i = 0; i < ex.size(); ++i) {
    if (i == 2) row = 1, base = 0;  // the packing shared_batch writes
    const int64_t P = static_cast<int64_t>(ex[i].prompt.size());
    // Prefix token t predicts prompt[t + 1]; the prefix's last predicts each segment's first
    // token, prompt[P - 1].
    const auto prompt = lp[row].narrow(0, base, P - 1);
    s.prompt_lp.push_back(prompt.detach().cpu());
    loss = loss + (prompt * w.prompt[i].to(dev)).sum();
    for (size_t k = 0; k < ex[i].responses.size(); ++k, ++n_seg) {
      const auto& seg = batch.segments.at(n_seg);
      EXPECT_EQ(seg.document, static_cast<int64_t>(i));
      EXPECT_EQ(seg.row, row);
      const int64_t n = static_cast<int64_t>(ex[i].responses[k].size());
      EXPECT_EQ(seg.span.end - seg.span.begin, n + 1);
      const auto resp = lp[row].narrow(0, seg.span.begin, n);
      // A segment's last token predicts nothing (its next token is another segment's).
      if (seg.span.last() < lp.size(1)) {
        EXPECT_EQ(lp[row][seg.span.last()].item<float>(), 0.0f);
      }
      s.response_lp[i].push_back(resp.detach().cpu());
      s.sums[i].push_back(sums[n_seg].item<double>());
      loss = loss + (resp * w.response[i][k].to(dev)).sum();
    }
    base = batch.segments.at(n_seg - 1).span.end;
  }
  loss.backward();
  s.grads = take_grads(model);
  return s;
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

void expect_equal(const Scored& got, const Scored& want) {
  for (size_t i = 0; i < want.prompt_lp.size(); ++i) {
    EXPECT_LE(max_diff(got.prompt_lp[i], want.prompt_lp[i]), 1e-5) << "prompt " << i;
    for (size_t k = 0; k < want.response_lp[i].size(); ++k) {
      EXPECT_LE(max_diff(got.response_lp[i][k], want.response_lp[i][k]), 1e-5)
          << "example " << i << " response " << k;
      EXPECT_NEAR(got.sums[i][k], want.sums[i][k], 1e-5 * std::max(1.0, std::abs(want.sums[i][k])))
          << "sum of example " << i << " response " << k;
    }
  }
  ASSERT_EQ(got.grads.size(), want.grads.size());
  for (size_t p = 0; p < want.grads.size(); ++p) {
    const double scale = std::max(1.0, want.grads[p].abs().max().item<double>());
    EXPECT_LE(max_diff(got.grads[p], want.grads[p]), 1e-5 * scale) << "parameter " << p;
  }
}

// Runs a check with our CPU attention kernel and with ATen's attention (dense mask).
class SharedPrefixModel : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { kernels::causal_attention_allowed() = GetParam(); }
  void TearDown() override { kernels::causal_attention_allowed() = true; }
};

LlamaConfig tiny(ModelKind kind) {
  auto c = preset_config("tiny");  // 4 heads, 2 kv heads
  c.kind = kind;
  c.num_hidden_layers = 2;
  return c;
}

TEST_P(SharedPrefixModel, LogprobsAndGradientsEqualSeparateRows) {
  LlamaModel model(tiny(ModelKind::kCausalLM));
  model->reset_parameters(3);
  const auto ex = examples(model->config().vocab_size);
  const auto w = weights(ex);
  const auto want = separate_logprobs(model, ex, w, at::kCPU);
  {
    SCOPED_TRACE("positions given");
    expect_equal(shared_logprobs(model, ex, w, at::kCPU, true), want);
  }
  {
    SCOPED_TRACE("default positions");
    expect_equal(shared_logprobs(model, ex, w, at::kCPU, false), want);
  }
}

// Reward model: each segment's reward (read at its last token) against the reward of the
// separate row, and the gradients of a weighted sum of rewards.
void check_rewards(at::Device dev) {
  LlamaModel model(tiny(ModelKind::kRewardModel));
  model->reset_parameters(4);
  model->to(dev);
  const auto ex = examples(model->config().vocab_size);
  const auto w = weights(ex);
  std::vector<double> want;
  at::Tensor loss = at::zeros({}, at::TensorOptions().device(dev));
  for (size_t i = 0; i < ex.size(); ++i) {
    for (size_t k = 0; k < ex[i].responses.size(); ++k) {
      Ids ids = ex[i].prompt;
      ids.insert(ids.end(), ex[i].responses[k].begin(), ex[i].responses[k].end());
      const auto row = at::tensor(ids).unsqueeze(0).to(dev);                // [1, L]
      const auto r = model->rewards({row, {}, {}, at::ones_like(row)});  // [1]
      want.push_back(r.item<double>());
      loss = loss + r.sum() * w.reward[i][k];
    }
  }
  loss.backward();
  const auto want_grads = take_grads(model);

  const auto batch = shared_batch(ex);
  auto in = batch.forward_inputs();
  for (auto* t : {&in.input_ids, &in.position_ids, &in.document_ids, &in.attention_mask,
                  &in.segment_ids}) {
    *t = t->to(dev);
  }
  const auto per_row = model->segment_rewards(in);  // [2, 5]: row 0 has 5 segments, row 1 two
  ASSERT_EQ(per_row.sizes(), (at::IntArrayRef{2, 5}));
  const auto flat = model->token_rewards(in).reshape({-1}).index_select(
      0, batch.segment_last.to(dev));  // [N]
  ASSERT_EQ(flat.size(0), static_cast<int64_t>(want.size()));
  at::Tensor got_loss = at::zeros({}, at::TensorOptions().device(dev));
  size_t n = 0;
  for (size_t i = 0; i < ex.size(); ++i) {
    for (size_t k = 0; k < ex[i].responses.size(); ++k, ++n) {
      EXPECT_NEAR(flat[n].item<double>(), want[n], 1e-5) << "segment " << n;
      const auto& seg = batch.segments[n];
      const int64_t col = seg.row == 0 ? static_cast<int64_t>(n) : static_cast<int64_t>(n) - 5;
      EXPECT_NEAR(per_row[seg.row][col].item<double>(), want[n], 1e-5) << "segment " << n;
      got_loss = got_loss + flat[n] * w.reward[i][k];
    }
  }
  EXPECT_EQ(per_row[1][2].item<float>(), 0.0f);  // row 1 has no third segment
  got_loss.backward();
  const auto got_grads = take_grads(model);
  for (size_t p = 0; p < want_grads.size(); ++p) {
    const double scale = std::max(1.0, want_grads[p].abs().max().item<double>());
    EXPECT_LE(max_diff(got_grads[p], want_grads[p]), 1e-5 * scale) << "parameter " << p;
  }
}

TEST_P(SharedPrefixModel, RewardsPerSegmentEqualSeparateRows) { check_rewards(at::kCPU); }

INSTANTIATE_TEST_SUITE_P(Attention, SharedPrefixModel, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "OurKernel" : "Aten"; });

TEST(SharedPrefixCuda, LogprobsRewardsAndGradientsEqualSeparateRows) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const at::Device dev(at::kCUDA);
  LlamaModel model(tiny(ModelKind::kCausalLM));
  model->reset_parameters(3);
  model->to(dev);
  const auto ex = examples(model->config().vocab_size);
  const auto w = weights(ex);
  expect_equal(shared_logprobs(model, ex, w, dev, true), separate_logprobs(model, ex, w, dev));
  check_rewards(dev);
}

}  // namespace
}  // namespace posttrain::core
