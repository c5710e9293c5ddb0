// core/model/linear.h on CPU: the float32 path equals at::linear; under CPU bf16 autocast the
// outputs match autocast's at::linear, weight gradients are float32 and exact for the bf16
// operands (closer to float32 than autocast's own), gradients accumulate, activation
// checkpointing recomputes identically, and the LM head's gradient through target_logprobs is
// float32 for tied and untied heads. The bounds are derived in linear_checks.h; the same checks
// run on CUDA in linear_cuda_test.cpp.
#include "core/model/linear.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "linear_checks.h"

namespace posttrain::core {
namespace {

const at::Device kCpu(at::kCPU);

TEST(Linear, Float32EqualsAtLinear) { testing::expect_float32_equals_at_linear(kCpu); }

TEST(Linear, AutocastMatchesAtenAndKeepsFloat32WeightGradients) {
  testing::expect_autocast_properties(kCpu);
}

TEST(Linear, AutocastWithBf16InputGivesBf16InputGradient) {
  testing::expect_autocast_bf16_input(kCpu);
}

TEST(Linear, GradientsAccumulateOverBackwardCalls) { testing::expect_gradients_accumulate(kCpu); }

TEST(Linear, CheckpointedLayersGiveIdenticalGradientsUnderAutocast) {
  testing::expect_checkpointing_changes_nothing(kCpu, 0.0);
}

TEST(Linear, HeadGradientsAreFloat32ForTiedAndUntiedHeads) {
  testing::expect_head_gradients(kCpu, 1e-6);
}

TEST(Linear, FusedOutputsHaveTheirWeightsShapes) {
  const auto p = testing::make_problem(5, {6, 2, 2}, 10);
  for (bool autocast : {false, true}) {
    for (auto layout : {FusedLayout::kStacked, FusedLayout::kSeparate}) {
      AutocastScope scope(at::kCPU, autocast, at::kBFloat16);
      const auto y = linear_fused(p.x, p.w, layout);
      ASSERT_EQ(y.size(), 3u);
      EXPECT_EQ(y[0].sizes(), (std::vector<int64_t>{2, 9, 6}));
      EXPECT_EQ(y[2].sizes(), (std::vector<int64_t>{2, 9, 2}));
      EXPECT_EQ(y[1].scalar_type(), autocast ? at::kBFloat16 : at::kFloat);
    }
  }
  // A 1-D input and a single weight work like at::linear.
  const auto v = at::randn({10});
  EXPECT_TRUE(at::allclose(linear_fused(v, {p.w[0]})[0], at::linear(v, p.w[0])));
  EXPECT_THROW(linear_fused(p.x, {at::randn({3, 7})}), c10::Error);
}

// mm_as / addmm_as_ on CPU: float32 results of bf16 operands equal the float32 GEMM of the
// upcast operands (the maths aten::mm.dtype does on CUDA).
TEST(Linear, MmAsAccumulatesBf16OperandsInFloat32) {
  at::manual_seed(6);
  const auto a = at::randn({7, 40}).to(at::kBFloat16), b = at::randn({40, 5}).to(at::kBFloat16);
  const auto want = at::mm(a.to(at::kFloat), b.to(at::kFloat));
  const auto got = mm_as(a, b, at::kFloat);
  EXPECT_EQ(got.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::allclose(got, want, 1e-6, 1e-6));
  auto acc = at::randn({7, 5});
  const auto expect = acc + want;
  addmm_as_(acc, a, b);
  EXPECT_TRUE(at::allclose(acc, expect, 1e-6, 1e-6));
  // bf16 in, bf16 out: plain mm.
  EXPECT_TRUE(at::equal(mm_as(a, b, at::kBFloat16), at::mm(a, b)));
}

}  // namespace
}  // namespace posttrain::core
