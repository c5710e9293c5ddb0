// The CPU float32 loops of rms_norm, apply_rope, swiglu and the log-prob rows against their
// defining formulas evaluated by ATen in float64 (values and gradients), with the AVX2 path and
// with the baseline build's path; and cpu_vec.h's sigmoid against the float64 logistic function.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>

#include <cmath>
#include <vector>

#include "kernels/cpu_vec.h"
#include "kernels/logprob_rows.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"

namespace posttrain::kernels {
namespace {

// Runs the test body once with AVX2 allowed and once without.
class CpuFused : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { cpu::avx2_allowed() = GetParam(); }
  void TearDown() override { cpu::avx2_allowed() = true; }
};

// Leaf copies (float32 for ours, float64 for the reference) of `t`.
std::pair<at::Tensor, at::Tensor> leaves(const at::Tensor& t) {
  return {t.detach().clone().requires_grad_(true),
          t.detach().to(at::kDouble).requires_grad_(true)};
}

void expect_close(const at::Tensor& ours, const at::Tensor& ref, double rtol, double atol) {
  ASSERT_EQ(ours.sizes(), ref.sizes());
  EXPECT_EQ(ours.scalar_type(), at::kFloat);
  const double err = (ours.to(at::kDouble) - ref).abs().max().item<double>();
  const double scale = ref.abs().max().item<double>();
  EXPECT_LE(err, atol + rtol * scale) << "max abs error " << err << " (reference scale " << scale
                                      << ")";
}

TEST_P(CpuFused, RmsNormMatchesFormula) {
  at::manual_seed(0);
  for (const int64_t h : {128, 37}) {  // a multiple of the 16 lanes, and a ragged width
    const auto x0 = at::randn({3, 5, h}) * 2;
    const auto w0 = at::randn({h});
    const auto g = at::randn({3, 5, h});
    auto [x, xd] = leaves(x0);
    auto [w, wd] = leaves(w0);
    const auto y = rms_norm(x, w, 1e-5);
    const auto yd = wd * (xd * at::rsqrt(xd.pow(2).mean({-1}, true) + 1e-5));
    expect_close(y, yd, 1e-6, 1e-6);
    y.backward(g);
    yd.backward(g.to(at::kDouble));
    expect_close(x.grad(), xd.grad(), 1e-5, 1e-6);
    expect_close(w.grad(), wd.grad(), 1e-5, 1e-6);
  }
}

TEST_P(CpuFused, RmsNormTakesStridedInput) {
  at::manual_seed(1);
  const auto base = at::randn({16, 4, 64});
  const auto x = base.transpose(0, 1);  // [4, 16, 64], not contiguous
  const auto w = at::randn({64});
  const auto expect = w * (x * at::rsqrt(x.pow(2).mean({-1}, true) + 1e-6));
  EXPECT_TRUE(at::allclose(rms_norm(x, w, 1e-6), expect, 1e-5, 1e-6));
}

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)}, -1);
}

TEST_P(CpuFused, RopeMatchesFormulaOnStridedInput) {
  at::manual_seed(2);
  const int64_t B = 2, T = 7, H = 3, D = 32;
  // x as a view into a wider projection output, like q out of a fused [q | k | v] matmul.
  const auto wide = at::randn({B, T, H * D + 40});
  const auto x0 = wide.narrow(-1, 8, H * D).view({B, T, H, D});
  ASSERT_FALSE(x0.is_contiguous());
  // Different halves in cos/sin, so a swap of their halves would show.
  const auto angle = at::randn({B, T, D}) * 3;
  const auto cos = angle.cos(), sin = angle.sin();
  const auto g = at::randn({B, T, H, D});
  auto x = x0.detach().requires_grad_(true);  // a strided leaf
  auto xd = x0.detach().to(at::kDouble).requires_grad_(true);
  const auto y = apply_rope(x, cos, sin);
  const auto cd = cos.to(at::kDouble).unsqueeze(2), sd = sin.to(at::kDouble).unsqueeze(2);
  const auto yd = xd * cd + rotate_half(xd) * sd;
  expect_close(y, yd, 1e-6, 1e-6);
  y.backward(g);
  yd.backward(g.to(at::kDouble));
  expect_close(x.grad(), xd.grad(), 1e-6, 1e-6);
}

TEST_P(CpuFused, SwigluMatchesFormulaIncludingLargeGates) {
  at::manual_seed(3);
  auto g0 = at::randn({5, 67}) * 4;
  // Edges of the sigmoid: zero, both signs of zero, far tails, beyond the clamp at 87.
  const std::vector<float> edges{0.0f, -0.0f, 30.0f, -30.0f, 86.9f, -86.9f, 100.0f, -100.0f,
                                 1e4f,  -1e4f};
  for (size_t i = 0; i < edges.size(); ++i) g0.view({-1})[static_cast<int64_t>(i)] = edges[i];
  const auto u0 = at::randn({5, 67});
  const auto d = at::randn({5, 67});
  auto [gate, gd] = leaves(g0);
  auto [up, ud] = leaves(u0);
  const auto y = swiglu(gate, up);
  const auto yd = gd * at::sigmoid(gd) * ud;
  expect_close(y, yd, 1e-6, 1e-6);
  y.backward(d);
  yd.backward(d.to(at::kDouble));
  expect_close(gate.grad(), gd.grad(), 1e-6, 1e-6);
  expect_close(up.grad(), ud.grad(), 1e-6, 1e-6);
}

TEST_P(CpuFused, NanGateStaysNan) {
  const auto g = at::tensor({NAN, 1.0f});
  const auto y = swiglu(g, at::ones({2}));
  EXPECT_TRUE(std::isnan(y[0].item<float>()));
  EXPECT_NEAR(y[1].item<float>(), 1.0 / (1.0 + std::exp(-1.0)), 1e-7);
}

TEST_P(CpuFused, LogprobRowsMatchLogSoftmax) {
  at::manual_seed(4);
  for (const int64_t v : {512, 37}) {
    auto logits = at::randn({9, v}) * 4;
    logits[0].fill_(0.0f);  // a flat row
    logits[1][v - 1] = 120.0f;  // one dominant logit: the rest underflow exp
    logits[2][3] = -200.0f;
    const auto targets = at::randint(0, v, {9}, at::kLong);
    const auto g = at::randn({9});
    const auto [lse, lp] = logprob_rows_forward(logits, targets, /*chunk=*/4);
    const auto xd = logits.to(at::kDouble);
    const auto lse_ref = at::logsumexp(xd, {1});
    const auto lp_ref = xd.gather(1, targets.unsqueeze(1)).squeeze(1) - lse_ref;
    expect_close(lse, lse_ref, 1e-6, 1e-5);
    expect_close(lp, lp_ref, 1e-6, 1e-5);
    // d/dx of sum g * logprob = g * (onehot(target) - softmax(x)).
    const auto grad_ref = at::one_hot(targets, v).to(at::kDouble).sub(at::softmax(xd, 1)) *
                          g.to(at::kDouble).unsqueeze(1);
    auto d = logits.clone();
    logprob_rows_backward_(d, targets, lse, g, /*chunk=*/4);
    expect_close(d, grad_ref, 1e-6, 1e-6);
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, CpuFused, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Avx2" : "Baseline"; });

TEST(CpuVec, SigmoidWithinFloatRounding) {
  double worst = 0;
  for (int i = -200000; i <= 200000; ++i) {
    const float x = static_cast<float>(i) * 4.5e-4f;  // [-90, 90]
    const double ref = 1.0 / (1.0 + std::exp(-static_cast<double>(x)));
    const double rel = std::fabs(cpu::sigmoid(x) - ref) / ref;
    if (ref > 1e-30) worst = std::max(worst, rel);
  }
  EXPECT_LT(worst, 4e-7);
}

}  // namespace
}  // namespace posttrain::kernels
