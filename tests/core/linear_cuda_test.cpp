// core/model/linear.h and the LM head on CUDA (they skip without a GPU; scripts/gpu_check.sh
// runs them): aten::mm.dtype / addmm.dtype give float32 results of bf16 operands, the linear
// checks of linear_checks.h under CUDA bf16 autocast, and the whole tiny model's loss and
// float32 master-weight gradients under autocast against float32 on CPU, with and without
// activation checkpointing.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "core/model/linear.h"
#include "linear_checks.h"

namespace posttrain::core {
namespace {

#define SKIP_WITHOUT_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

const at::Device kCuda(at::kCUDA);

// float32 results from bf16 operands: products exact, sums in float32 (cuBLAS's compute type):
// equal to the float64 product of the bf16 values to float32 accumulation error.
TEST(CudaLinear, MmAsAndAddmmAsAccumulateInFloat32) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(21);
  // Odd sizes, a transposed operand (as the weight gradient passes g.t()), and K large enough
  // that a bf16 result would be visibly rounded.
  const auto a = at::randn({300, 37}).to(at::kBFloat16), b = at::randn({300, 45}).to(at::kBFloat16);
  const auto exact = testing::f64(a).t().mm(testing::f64(b));  // [37, 45]
  const auto scale = testing::f64(a).abs().t().mm(testing::f64(b).abs());
  const auto got = mm_as(a.cuda().t(), b.cuda(), at::kFloat);
  ASSERT_EQ(got.scalar_type(), at::kFloat);
  ASSERT_TRUE(got.is_cuda());
  EXPECT_LE(testing::max_excess(testing::f64(got) - exact, 1e-5 * scale), 0.0);
  // A bf16 result is rounded: further from the exact sum.
  const auto rounded = at::mm(a.cuda().t(), b.cuda());
  EXPECT_LT(testing::l2(testing::f64(got) - exact), testing::l2(testing::f64(rounded) - exact));

  // acc += a^T b into a float32 acc, twice (the recomputed LM head's per-chunk sum).
  const auto c0 = at::randn({37, 45});
  auto acc = c0.cuda();
  addmm_as_(acc, a.cuda().t(), b.cuda());
  addmm_as_(acc, a.cuda().t(), b.cuda());
  ASSERT_EQ(acc.scalar_type(), at::kFloat);
  EXPECT_LE(testing::max_excess(testing::f64(acc) - (testing::f64(c0) + 2 * exact),
                                2e-5 * (scale + testing::f64(c0).abs())),
            0.0);
  // A bf16 acc takes plain addmm_.
  auto acc16 = c0.to(at::kBFloat16).cuda();
  addmm_as_(acc16, a.cuda().t(), b.cuda());
  EXPECT_EQ(acc16.scalar_type(), at::kBFloat16);
  EXPECT_LE(testing::max_excess(testing::f64(acc16) - (testing::f64(c0) + exact),
                                0.02 * (scale + testing::f64(c0).abs())),
            0.0);
}

TEST(CudaLinear, Float32EqualsAtLinear) {
  SKIP_WITHOUT_CUDA();
  testing::expect_float32_equals_at_linear(kCuda);
}

TEST(CudaLinear, AutocastMatchesAtenAndKeepsFloat32WeightGradients) {
  SKIP_WITHOUT_CUDA();
  testing::expect_autocast_properties(kCuda);
}

TEST(CudaLinear, AutocastWithBf16InputGivesBf16InputGradient) {
  SKIP_WITHOUT_CUDA();
  testing::expect_autocast_bf16_input(kCuda);
}

TEST(CudaLinear, GradientsAccumulateOverBackwardCalls) {
  SKIP_WITHOUT_CUDA();
  testing::expect_gradients_accumulate(kCuda);
}

TEST(CudaLinear, HeadGradientsAreFloat32ForTiedAndUntiedHeads) {
  SKIP_WITHOUT_CUDA();
  testing::expect_head_gradients(kCuda, 1e-2);
}

// Recomputation repeats the forward's GEMMs exactly, but flash attention's backward may sum in
// another order: agreement to float32-level noise on bf16 gradients, not bitwise.
TEST(CudaLinear, CheckpointedLayersGiveTheSameGradientsUnderAutocast) {
  SKIP_WITHOUT_CUDA();
  testing::expect_checkpointing_changes_nothing(kCuda, 1e-3);
}

// The tiny model's loss and every parameter's gradient under CUDA bf16 autocast against float32
// on CPU: gradients arrive float32 on the float32 master weights, and track the float32 ones to
// bf16-level error (relative norm error, a tighter test than Cuda.Bf16AutocastLossAndGradients-
// TrackFloat32's cosine), with and without activation checkpointing.
TEST(CudaLinear, TinyModelAutocastLossAndGradientsTrackFloat32) {
  SKIP_WITHOUT_CUDA();
  auto config = preset_config("tiny");
  at::manual_seed(11);
  const auto ids = at::randint(0, config.vocab_size, {2, 128}, at::kLong);
  LlamaModel cpu(config);
  cpu->reset_parameters(5);
  double l_cpu = 0;
  const auto ref = testing::model_grads(cpu, ids, at::kCPU, false, &l_cpu);
  for (bool checkpointing : {false, true}) {
    SCOPED_TRACE(checkpointing ? "checkpointed" : "plain");
    LlamaModel gpu(config);
    gpu->reset_parameters(5);
    gpu->to(kCuda);
    gpu->set_activation_checkpointing(checkpointing);
    double l_gpu = 0;
    const auto got = testing::model_grads(gpu, ids, kCuda, true, &l_gpu);
    EXPECT_NEAR(l_gpu, l_cpu, 1e-2 * std::abs(l_cpu));
    ASSERT_EQ(got.size(), ref.size());
    const auto names = gpu->named_parameters().keys();
    for (size_t i = 0; i < got.size(); ++i) {
      SCOPED_TRACE(names[i]);
      ASSERT_EQ(got[i].scalar_type(), at::kFloat);
      EXPECT_TRUE(got[i].isfinite().all().item<bool>());
      const auto a = testing::f64(ref[i]), b = testing::f64(got[i]);
      // bf16 activations through 4 layers: a few percent of the gradient's norm at most.
      EXPECT_LE(testing::l2(a - b), 5e-2 * testing::l2(a));
    }
  }
}

}  // namespace
}  // namespace posttrain::core
