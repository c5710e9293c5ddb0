// CUDA checks, run on a machine with a GPU (scripts/gpu_check.sh runs them; elsewhere they
// skip): the model's float32 log-probs on CUDA equal the CPU's and the transformers reference;
// a bf16-autocast training loss and its gradients stay close to the float32 CPU ones (flash
// attention with native GQA, bf16 RoPE and LM head); fused AdamW on CUDA equals the CPU one;
// our CUDA kernels (kernels/cuda, in builds with POSTTRAIN_CUDA) equal the ATen path on CPU,
// values and gradients, in float32 and bf16.
#include <algorithm>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/optim/adamw.h>

#include "core/logprobs.h"
#include "core/model/llama.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/train/fused_adamw.h"
#include "kernels/logprob_rows.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
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
    // A clipping divisor on the later steps, as the trainer passes it.
    fused_adamw_step(oc, s == 0 ? at::Tensor() : at::full({}, 1.5 * s, at::kFloat));
    fused_adamw_step(og, s == 0 ? at::Tensor() : at::full({}, 1.5 * s, at::kFloat).cuda());
  }
  EXPECT_TRUE(at::allclose(pg.cpu(), pc, 1e-5, 1e-6));
}

// Largest difference relative to the reference's scale (at least 1).
double max_diff(const at::Tensor& ref, const at::Tensor& b) {
  const auto r = ref.cpu().to(at::kFloat);
  const double scale = std::max(1.0, r.abs().max().item<double>());
  return (r - b.cpu().to(at::kFloat)).abs().max().item<double>() / scale;
}

TEST(Cuda, LogprobRowsMatchTheAtenPath) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(4);
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(dtype == at::kFloat ? "float32" : "bf16");
    const auto logits = (at::randn({37, 1003}) * 4).to(dtype);  // [M, V]
    const auto targets = at::randint(0, 1003, {37}, at::kLong);
    const auto grad = at::randn({37});
    auto [lse_c, lp_c] = kernels::logprob_rows_forward(logits, targets, 8);
    auto [lse_g, lp_g] = kernels::logprob_rows_forward(logits.cuda(), targets.cuda(), 8);
    EXPECT_LT(max_diff(lse_c, lse_g), 1e-4);
    EXPECT_LT(max_diff(lp_c, lp_g), 1e-4);
    auto d_c = logits.clone();
    auto d_g = logits.cuda();
    kernels::logprob_rows_backward_(d_c, targets, lse_c, grad, 8);
    kernels::logprob_rows_backward_(d_g, targets.cuda(), lse_g, grad.cuda(), 8);
    // float32: each side computes its own lse (~14 here, where one ulp is 9.5e-7), and one ulp
    // of it moves the worst gradient entry by ~6e-7, so 1e-6 would leave no margin.
    EXPECT_LT(max_diff(d_c, d_g), dtype == at::kFloat ? 1e-5 : 1e-2);  // bf16: 2 ulps
    // Each row of the gradient sums to zero (softmax sums to one).
    EXPECT_LT(d_g.to(at::kFloat).sum(1).abs().max().item<double>(), dtype == at::kFloat ? 1e-4 : 0.05);
  }
}

TEST(Cuda, RopeAndSwigluMatchTheAtenPath) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(6);
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(dtype == at::kFloat ? "float32" : "bf16");
    const double tol = dtype == at::kFloat ? 1e-5 : 2e-2;  // bf16: ATen rounds 2-3 times
    const auto x0 = at::randn({2, 7, 3, 16}).to(dtype);  // [B, T, H, D]
    const auto ang = at::randn({2, 7, 16});
    const auto cos = ang.cos().to(dtype), sin = ang.sin().to(dtype);  // [B, T, D]
    const auto g0 = at::randn({2, 7, 3, 16}).to(dtype);
    auto xc = x0.clone().requires_grad_(true);
    auto xg = x0.cuda().requires_grad_(true);
    const auto oc = kernels::apply_rope(xc, cos, sin);
    const auto og = kernels::apply_rope(xg, cos.cuda(), sin.cuda());
    EXPECT_LT(max_diff(oc, og), tol);
    (oc * g0).sum().backward();
    (og * g0.cuda()).sum().backward();
    EXPECT_LT(max_diff(xc.grad(), xg.grad()), tol);

    const auto a0 = at::randn({5, 33}).to(dtype), b0 = at::randn({5, 33}).to(dtype);
    auto ac = a0.clone().requires_grad_(true), bc = b0.clone().requires_grad_(true);
    auto ag = a0.cuda().requires_grad_(true), bg = b0.cuda().requires_grad_(true);
    const auto sc = kernels::swiglu(ac, bc);
    const auto sg = kernels::swiglu(ag, bg);
    EXPECT_LT(max_diff(sc, sg), tol);
    const auto h = at::randn({5, 33}).to(dtype);
    (sc * h).sum().backward();
    (sg * h.cuda()).sum().backward();
    EXPECT_LT(max_diff(ac.grad(), ag.grad()), tol);
    EXPECT_LT(max_diff(bc.grad(), bg.grad()), tol);
  }
}

}  // namespace
}  // namespace posttrain::core
