// kernels::logprob_gather against hand-derived values and against autograd through
// at::log_softmax (its backward).
#include "kernels/logprob_gather.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>

#include <cmath>

namespace posttrain::kernels {
namespace {

TEST(LogprobGather, MatchesHandDerivedValues) {
  // Row 0: logits (0, ln 3) -> p = (1/4, 3/4); target 1 -> log 3/4.
  // Row 1: uniform over 2 -> log 1/2. Row 2: ignored -> 0.
  const auto logits = at::tensor({0.0, std::log(3.0), 5.0, 5.0, 1.0, 2.0}, at::kFloat).view({3, 2});
  const auto targets = at::tensor(std::vector<int64_t>{1, 0, kIgnoreIndex});
  const auto lp = logprob_gather(logits, targets);
  ASSERT_EQ(lp.sizes(), at::IntArrayRef({3}));
  EXPECT_NEAR(lp[0].item<float>(), std::log(0.75), 1e-6);
  EXPECT_NEAR(lp[1].item<float>(), std::log(0.5), 1e-6);
  EXPECT_EQ(lp[2].item<float>(), 0.0f);
}

TEST(LogprobGather, BackwardMatchesAutograd) {
  at::manual_seed(0);
  auto logits = at::randn({6, 11}, at::kFloat) * 3;
  const auto targets = at::tensor(std::vector<int64_t>{3, 0, kIgnoreIndex, 10, 7, 7});
  const auto g = at::randn({6}, at::kFloat);
  auto x = logits.clone().requires_grad_(true);
  const auto valid = targets.ne(kIgnoreIndex);
  const auto picked = at::log_softmax(x, 1).gather(1, targets.clamp_min(0).unsqueeze(1)).squeeze(1);
  (picked * valid.to(at::kFloat) * g).sum().backward();
  const auto ours = logprob_gather_backward(logits, targets, g);
  EXPECT_TRUE(at::allclose(ours, x.grad(), 1e-5, 1e-6));
  const auto fwd = logprob_gather(logits, targets);
  EXPECT_TRUE(at::allclose(fwd, picked.detach() * valid.to(at::kFloat), 1e-5, 1e-6));
}

TEST(LogprobGather, Bf16LogitsComputeInFloat32) {
  const auto logits = at::tensor({1.0, 2.0, 3.0, 4.0}, at::kFloat).view({1, 4});
  const auto lp = logprob_gather(logits.to(at::kBFloat16), at::tensor(std::vector<int64_t>{2}));
  EXPECT_EQ(lp.scalar_type(), at::kFloat);
  // log(e^3 / (e + e^2 + e^3 + e^4)); the inputs are exact in bf16.
  const double expect =
      3.0 - std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + std::exp(4.0));
  EXPECT_NEAR(lp[0].item<float>(), expect, 1e-6);
}

TEST(LogprobGather, RejectsOutOfRangeTargets) {
  const auto logits = at::zeros({2, 4});
  EXPECT_THROW(logprob_gather(logits, at::tensor(std::vector<int64_t>{0, 4})), c10::Error);
  EXPECT_THROW(logprob_gather(logits, at::tensor(std::vector<int64_t>{-2, 1})), c10::Error);
  EXPECT_THROW(logprob_gather(logits, at::tensor(std::vector<int64_t>{0})), c10::Error);
}

}  // namespace
}  // namespace posttrain::kernels
