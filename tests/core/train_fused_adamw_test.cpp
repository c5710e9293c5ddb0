// fused_adamw_step against LibTorch's own (unfused, per-parameter) torch::optim::AdamW as the
// reference: same parameters, gradients and groups, several steps, equal to float32 rounding;
// and the state it leaves is the one checkpoints save (exp_avg, exp_avg_sq, step).
#include "core/train/fused_adamw.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>

#include <vector>

namespace posttrain::core {
namespace {

std::vector<torch::optim::OptimizerParamGroup> two_groups(const std::vector<at::Tensor>& decay,
                                                          const std::vector<at::Tensor>& plain) {
  auto opts = [](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(3e-3).betas({0.9, 0.95}).eps(1e-8).weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> g;
  g.emplace_back(decay, opts(0.1));
  g.emplace_back(plain, opts(0.0));
  return g;
}

TEST(FusedAdamW, MatchesLibTorchAdamWOverSeveralSteps) {
  at::manual_seed(7);
  const std::vector<at::Tensor> init = {at::randn({8, 5}), at::randn({5, 3}), at::randn({5})};
  auto clone_all = [&] {
    std::vector<at::Tensor> out;
    for (const auto& t : init) out.push_back(t.clone().requires_grad_(true));
    return out;
  };
  auto ref = clone_all(), ours = clone_all();
  torch::optim::AdamW ref_opt(two_groups({ref[0], ref[1]}, {ref[2]}),
                              torch::optim::AdamWOptions(3e-3));
  torch::optim::AdamW our_opt(two_groups({ours[0], ours[1]}, {ours[2]}),
                              torch::optim::AdamWOptions(3e-3));
  for (int step = 0; step < 5; ++step) {
    for (size_t i = 0; i < init.size(); ++i) {
      const auto g = at::randn(init[i].sizes());
      ref[i].mutable_grad() = g.clone();
      ours[i].mutable_grad() = g.clone();
    }
    if (step == 2) {  // a parameter without a gradient this step is left alone
      ref[1].mutable_grad() = at::Tensor();
      ours[1].mutable_grad() = at::Tensor();
    }
    ref_opt.step();
    fused_adamw_step(our_opt);
    for (size_t i = 0; i < init.size(); ++i) {
      SCOPED_TRACE("step " + std::to_string(step) + " param " + std::to_string(i));
      EXPECT_TRUE(at::allclose(ours[i], ref[i], 1e-5, 1e-6))
          << (ours[i] - ref[i]).abs().max().item<double>();
    }
  }
  // The state is where checkpoints look for it, with per-parameter step counts.
  for (size_t i = 0; i < init.size(); ++i) {
    auto* r = static_cast<torch::optim::AdamWParamState*>(
        ref_opt.state().at(ref[i].unsafeGetTensorImpl()).get());
    auto* o = static_cast<torch::optim::AdamWParamState*>(
        our_opt.state().at(ours[i].unsafeGetTensorImpl()).get());
    EXPECT_EQ(o->step(), r->step());
    EXPECT_TRUE(at::allclose(o->exp_avg(), r->exp_avg(), 1e-5, 1e-7));
    EXPECT_TRUE(at::allclose(o->exp_avg_sq(), r->exp_avg_sq(), 1e-5, 1e-9));
  }
  EXPECT_EQ(static_cast<torch::optim::AdamWParamState*>(
                our_opt.state().at(ours[1].unsafeGetTensorImpl()).get())
                ->step(),
            4);
}

TEST(FusedAdamW, FirstStepMovesEachWeightByLrTimesSignOfItsGradient) {
  // Hand-derived: after one step m/(1-b1) = g and sqrt(v/(1-b2)) = |g|, so with no weight
  // decay and eps negligible, p -= lr * sign(g).
  auto p = at::tensor({1.0f, -2.0f, 0.5f}).requires_grad_(true);
  torch::optim::AdamW opt({p}, torch::optim::AdamWOptions(0.01).weight_decay(0.0).eps(1e-12));
  p.mutable_grad() = at::tensor({3.0f, -0.25f, 1e-3f});
  fused_adamw_step(opt);
  EXPECT_TRUE(at::allclose(p, at::tensor({0.99f, -1.99f, 0.49f}), 0, 1e-6)) << p;
}

// Clipping folded into the step: a grad_scale divisor gives the step of the divided gradients.
TEST(FusedAdamW, GradScaleDividesTheGradients) {
  at::manual_seed(9);
  const auto p0 = at::randn({6, 4}), g0 = at::randn({6, 4}) * 10;
  auto a = p0.clone().requires_grad_(true), b = p0.clone().requires_grad_(true);
  torch::optim::AdamW oa({a}, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  torch::optim::AdamW ob({b}, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  for (int s = 0; s < 3; ++s) {
    const double divisor = 2.5 + s;
    a.mutable_grad() = g0 / divisor;
    b.mutable_grad() = g0.clone();
    fused_adamw_step(oa);
    fused_adamw_step(ob, at::full({}, divisor, at::kFloat));
    EXPECT_TRUE(at::allclose(a, b, 1e-5, 1e-6)) << (a - b).abs().max().item<double>();
  }
  // Adam is scale-invariant up to eps: a divisor that changes each step changes the moments
  // (the check above would pass for any divisor if the kernel ignored it only at step 1).
  auto c = p0.clone().requires_grad_(true);
  torch::optim::AdamW oc({c}, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  for (int s = 0; s < 3; ++s) {
    c.mutable_grad() = g0.clone();
    fused_adamw_step(oc);
  }
  EXPECT_FALSE(at::allclose(b, c, 1e-5, 1e-6));
}

}  // namespace
}  // namespace posttrain::core
