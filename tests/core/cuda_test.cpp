// CUDA checks, run on a machine with a GPU (scripts/gpu_check.sh runs them; elsewhere they
// skip): the model's float32 log-probs on CUDA equal the CPU's and the transformers reference;
// a bf16-autocast training loss and its gradients stay close to the float32 CPU ones (flash
// attention with native GQA, bf16 RoPE and LM head); fused AdamW on CUDA equals the CPU one.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/optim/adamw.h>

#include "core/logprobs.h"
#include "core/model/llama.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/train/fused_adamw.h"
#include "model_test_util.h"

namespace posttrain::core {
namespace {

#define SKIP_WITHOUT_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

TEST(Cuda, Float32LogprobsMatchTheCpuAndTheReference) {
  SKIP_WITHOUT_CUDA();
  for (const std::string name : {"llama3_untied", "tied_plain"}) {
    SCOPED_TRACE(name);
    const auto ref = testing::read_json(testing::model_fixture(name) + "/reference.json");
    auto cpu = load_model(testing::model_fixture(name));
    auto gpu = load_model(testing::model_fixture(name), at::Device(at::kCUDA));
    at::NoGradGuard no_grad;
    for (const auto& seq : ref["sequences"]) {
      const auto ids = testing::ids_tensor(seq["input_ids"].get<std::vector<int64_t>>());
      const auto a = token_logprobs(*cpu, {ids, {}, {}, {}})[0];
      const auto b = token_logprobs(*gpu, {ids.cuda(), {}, {}, {}})[0].cpu();
      const auto want = at::tensor(seq["token_logprobs"].get<std::vector<double>>()).to(at::kFloat);
      EXPECT_LT((a - b).abs().max().item<double>(), 1e-4);
      EXPECT_LT((b - want).abs().max().item<double>(), 1e-4);
    }
  }
}

// Loss and gradients of one batch: float32 on CPU vs bf16 autocast on CUDA.
TEST(Cuda, Bf16AutocastLossAndGradientsTrackFloat32) {
  SKIP_WITHOUT_CUDA();
  auto config = preset_config("tiny");  // 4 heads, 2 kv heads: exercises native GQA
  LlamaModel cpu(config), gpu(config);
  cpu->reset_parameters(5);
  gpu->reset_parameters(5);
  gpu->to(at::Device(at::kCUDA));
  at::manual_seed(11);
  const auto ids = at::randint(0, config.vocab_size, {2, 256}, at::kLong);
  auto run = [&](LlamaModel& m, at::Device dev, bool autocast) {
    if (autocast) {
      at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
      at::autocast::set_autocast_enabled(at::kCUDA, true);
    }
    const auto lp = token_logprobs(*m, {ids.to(dev), {}, {}, {}});  // [2, 255]
    const auto loss = -lp.sum() / static_cast<double>(lp.numel());
    if (autocast) {
      at::autocast::set_autocast_enabled(at::kCUDA, false);
      at::autocast::clear_cache();
    }
    loss.backward();
    return loss.item<double>();
  };
  const double l_cpu = run(cpu, at::kCPU, false);
  const double l_gpu = run(gpu, at::Device(at::kCUDA), true);
  EXPECT_NEAR(l_gpu, l_cpu, 2e-2 * std::abs(l_cpu));
  const auto pc = cpu->named_parameters(), pg = gpu->named_parameters();
  for (const auto& item : pc) {
    SCOPED_TRACE(item.key());
    const auto a = item.value().grad().flatten();
    const auto b = pg[item.key()].grad().cpu().to(at::kFloat).flatten();
    const double cos = (a * b).sum().item<double>() / (a.norm().item<double>() *
                                                       b.norm().item<double>() + 1e-30);
    EXPECT_GT(cos, 0.98);
    EXPECT_TRUE(b.isfinite().all().item<bool>());
  }
}

TEST(Cuda, FusedAdamWEqualsTheCpuStep) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(2);
  const auto p0 = at::randn({64, 33}), g0 = at::randn({64, 33});
  auto pc = p0.clone().requires_grad_(true);
  auto pg = p0.cuda().requires_grad_(true);
  torch::optim::AdamW oc({pc}, torch::optim::AdamWOptions(1e-3).weight_decay(0.1));
  torch::optim::AdamW og({pg}, torch::optim::AdamWOptions(1e-3).weight_decay(0.1));
  for (int s = 0; s < 3; ++s) {
    pc.mutable_grad() = g0 * (s + 1);
    pg.mutable_grad() = (g0 * (s + 1)).cuda();
    fused_adamw_step(oc);
    fused_adamw_step(og);
  }
  EXPECT_TRUE(at::allclose(pg.cpu(), pc, 1e-5, 1e-6));
}

}  // namespace
}  // namespace posttrain::core
