// add_rms_norm and rms_norm's out dtype on CPU: values and the three gradients against the
// defining formula evaluated by ATen in float64 (several widths, ragged ones included, with the
// AVX2 and the baseline path of the float32 loop), and the properties the model relies on:
// the sum is exactly residual + branch, add-then-norm equals norm(sum) bit for bit (activation
// checkpointing recomputes the norm from the saved sum), a bf16 out dtype is the float32 result
// rounded once (what autocast's cast before the next linear gives), a bf16 branch under a
// float32 residual widens as the add's type promotion does, and the weight gradient does not
// change from run to run.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>

#include <tuple>
#include <vector>

#include "kernels/cpu_vec.h"
#include "kernels/rms_norm.h"

namespace posttrain::kernels {
namespace {

class AddRmsNorm : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { cpu::avx2_allowed() = GetParam(); }
  void TearDown() override { cpu::avx2_allowed() = true; }
};

at::Tensor leaf(const at::Tensor& t) { return t.detach().clone().requires_grad_(true); }
at::Tensor leaf64(const at::Tensor& t) {
  return t.detach().to(at::kDouble).requires_grad_(true);
}

// Largest |ours - ref| against atol + rtol * max|ref|.
void expect_close(const at::Tensor& ours, const at::Tensor& ref, double rtol, double atol) {
  ASSERT_TRUE(ours.defined());
  ASSERT_EQ(ours.sizes(), ref.sizes());
  const double err = (ours.to(at::kDouble) - ref.to(at::kDouble)).abs().max().item<double>();
  const double scale = ref.abs().max().item<double>();
  EXPECT_LE(err, atol + rtol * scale) << "max abs error " << err << " (reference scale " << scale
                                      << ")";
}

at::Tensor reference_norm(const at::Tensor& s, const at::Tensor& w, double eps) {
  return w * (s * at::rsqrt(s.pow(2).mean({-1}, true) + eps));
}

TEST_P(AddRmsNorm, ValuesAndGradientsMatchFloat64) {
  at::manual_seed(0);
  const double eps = 1e-5;
  // Widths: multiples of the 16 lanes, of 8 only, ragged; row counts odd and even.
  const std::vector<std::vector<int64_t>> shapes = {
      {3, 5, 128}, {7, 37}, {1, 1, 8}, {4, 576}, {9, 20}, {2, 3, 1}};
  for (const auto& shape : shapes) {
    SCOPED_TRACE(at::IntArrayRef(shape));
    const int64_t h = shape.back();
    const auto r0 = at::randn(shape) * 2, b0 = at::randn(shape), w0 = at::randn({h});
    const auto g = at::randn(shape), gs = at::randn(shape);
    auto r = leaf(r0), b = leaf(b0), w = leaf(w0);
    auto rd = leaf64(r0), bd = leaf64(b0), wd = leaf64(w0);
    const auto [sum, normed] = add_rms_norm(r, b, w, eps);
    EXPECT_EQ(sum.scalar_type(), at::kFloat);
    EXPECT_EQ(normed.scalar_type(), at::kFloat);
    EXPECT_TRUE(at::equal(sum, r0 + b0));
    const auto sd = rd + bd;
    const auto yd = reference_norm(sd, wd, eps);
    expect_close(normed, yd, 1e-6, 1e-6);
    ((normed * g).sum() + (sum * gs).sum()).backward();
    ((yd * g.to(at::kDouble)).sum() + (sd * gs.to(at::kDouble)).sum()).backward();
    expect_close(r.grad(), rd.grad(), 1e-5, 1e-6);
    expect_close(b.grad(), bd.grad(), 1e-5, 1e-6);
    expect_close(w.grad(), wd.grad(), 1e-5, 1e-6);
    EXPECT_TRUE(at::equal(r.grad(), b.grad()));
  }
}

TEST_P(AddRmsNorm, PlainNormTakesStridedInputAndMatchesFloat64) {
  at::manual_seed(1);
  const auto base = at::randn({16, 4, 40});
  const auto x0 = base.transpose(0, 1);  // [4, 16, 40], not contiguous
  ASSERT_FALSE(x0.is_contiguous());
  const auto w0 = at::randn({40}), g = at::randn({4, 16, 40});
  auto x = x0.detach().requires_grad_(true);
  auto w = leaf(w0);
  auto xd = leaf64(x0), wd = leaf64(w0);
  const auto y = rms_norm(x, w, 1e-6);
  const auto yd = reference_norm(xd, wd, 1e-6);
  expect_close(y, yd, 1e-6, 1e-6);
  y.backward(g);
  yd.backward(g.to(at::kDouble));
  expect_close(x.grad(), xd.grad(), 1e-5, 1e-6);
  expect_close(w.grad(), wd.grad(), 1e-5, 1e-6);
}

// The final norm reads the sum of the last layer but nobody reads that sum: its gradient is
// undefined. And the other way round: a sum read, its norm unused.
TEST_P(AddRmsNorm, EitherOutputMayGoUnused) {
  at::manual_seed(2);
  const auto r0 = at::randn({6, 24}), b0 = at::randn({6, 24}), w0 = at::randn({24});
  const auto g = at::randn({6, 24});
  {
    auto r = leaf(r0), b = leaf(b0), w = leaf(w0);
    auto rd = leaf64(r0), bd = leaf64(b0), wd = leaf64(w0);
    add_rms_norm(r, b, w, 1e-5).second.backward(g);
    reference_norm(rd + bd, wd, 1e-5).backward(g.to(at::kDouble));
    expect_close(r.grad(), rd.grad(), 1e-5, 1e-6);
    expect_close(b.grad(), bd.grad(), 1e-5, 1e-6);
    expect_close(w.grad(), wd.grad(), 1e-5, 1e-6);
  }
  {
    auto r = leaf(r0), b = leaf(b0), w = leaf(w0);
    add_rms_norm(r, b, w, 1e-5).first.backward(g);
    EXPECT_TRUE(at::equal(r.grad(), g));
    EXPECT_TRUE(at::equal(b.grad(), g));
    // No gradient reached the norm: the weight's is absent or zero.
    EXPECT_TRUE(!w.grad().defined() || w.grad().abs().max().item<float>() == 0.0f);
  }
}

// Activation checkpointing saves the sum and recomputes the norm from it; the value must be
// the one the forward computed.
TEST_P(AddRmsNorm, AddThenNormEqualsNormOfTheSumExactly) {
  at::manual_seed(3);
  for (const int64_t h : {64, 37}) {
    const auto r = at::randn({5, h}), b = at::randn({5, h}), w = at::randn({h});
    const auto [sum, normed] = add_rms_norm(r, b, w, 1e-5);
    EXPECT_TRUE(at::equal(normed, rms_norm(sum, w, 1e-5)));
    // No branch: the residual comes back as the sum.
    const auto [same, normed2] = add_rms_norm(sum, at::Tensor(), w, 1e-5);
    EXPECT_TRUE(same.is_same(sum));
    EXPECT_TRUE(at::equal(normed2, normed));
  }
}

// out_dtype bf16 with float32 data: the float32 result rounded once, i.e. what
// transformers' float32 LlamaRMSNorm followed by autocast's cast in the next linear gives.
TEST_P(AddRmsNorm, Bf16OutIsTheFloat32ResultRoundedOnce) {
  at::manual_seed(4);
  const auto r0 = at::randn({8, 96}), b0 = at::randn({8, 96}), w0 = at::randn({96});
  const auto [s32, n32] = add_rms_norm(r0, b0, w0, 1e-5);
  auto r = leaf(r0), b = leaf(b0), w = leaf(w0);
  const auto [s16, n16] = add_rms_norm(r, b, w, 1e-5, at::kBFloat16);
  EXPECT_EQ(s16.scalar_type(), at::kFloat);
  EXPECT_EQ(n16.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(s16, s32));
  EXPECT_TRUE(at::equal(n16, n32.to(at::kBFloat16)));
  // The transformers formulation, rounded by autocast: at most one bf16 step apart anywhere
  // (float32 rounding differences can move a value across a bf16 rounding boundary).
  const auto s = r0 + b0;
  const auto hf = (w0 * (s * at::rsqrt(s.pow(2).mean({-1}, true) + 1e-5))).to(at::kBFloat16);
  const auto diff = (n16.to(at::kFloat) - hf.to(at::kFloat)).abs();
  EXPECT_TRUE((diff <= hf.to(at::kFloat).abs() * (1.0 / 128)).all().item<bool>());
  EXPECT_LT(diff.gt(0).sum().item<int64_t>(), 8);
  // The gradient through the bf16 output is the float32 path's on the bf16 gradient.
  const auto g = at::randn({8, 96}).to(at::kBFloat16);
  n16.backward(g);
  auto r2 = leaf(r0), b2 = leaf(b0), w2 = leaf(w0);
  add_rms_norm(r2, b2, w2, 1e-5).second.backward(g.to(at::kFloat));
  EXPECT_TRUE(at::equal(r.grad(), r2.grad()));
  EXPECT_TRUE(at::equal(b.grad(), b2.grad()));
  EXPECT_TRUE(at::equal(w.grad(), w2.grad()));
}

// Under autocast a linear's output (the branch) is bf16 while the residual stream is float32.
TEST_P(AddRmsNorm, Bf16BranchOnAFloat32ResidualWidensLikeTheAdd) {
  at::manual_seed(5);
  const auto r0 = at::randn({6, 48}), w0 = at::randn({48});
  const auto b0 = at::randn({6, 48}).to(at::kBFloat16);
  auto r = leaf(r0), w = leaf(w0);
  auto b = b0.detach().clone().requires_grad_(true);
  const auto [sum, normed] = add_rms_norm(r, b, w, 1e-5, at::kBFloat16);
  EXPECT_EQ(sum.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(sum, r0 + b0));  // ATen's promotion: float32 + bf16 -> float32
  const auto g = at::randn({6, 48}).to(at::kBFloat16), gs = at::randn({6, 48});
  ((normed.to(at::kFloat) * g.to(at::kFloat)).sum() + (sum * gs).sum()).backward();
  EXPECT_EQ(b.grad().scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(b.grad(), r.grad().to(at::kBFloat16)));
  auto rd = leaf64(r0), bd = leaf64(b0), wd = leaf64(w0);
  const auto sd = rd + bd;
  ((reference_norm(sd, wd, 1e-5) * g.to(at::kDouble)).sum() + (sd * gs.to(at::kDouble)).sum())
      .backward();
  expect_close(r.grad(), rd.grad(), 1e-5, 1e-6);
  expect_close(w.grad(), wd.grad(), 1e-5, 1e-6);
}

TEST_P(AddRmsNorm, WeightGradientIsTheSameEveryRun) {
  at::manual_seed(6);
  const auto r0 = at::randn({257, 72}), b0 = at::randn({257, 72}), w0 = at::randn({72});
  const auto g = at::randn({257, 72});
  std::vector<at::Tensor> grads;
  for (int run = 0; run < 3; ++run) {
    auto r = leaf(r0), b = leaf(b0), w = leaf(w0);
    add_rms_norm(r, b, w, 1e-5).second.backward(g);
    grads.push_back(w.grad());
  }
  EXPECT_TRUE(at::equal(grads[0], grads[1]));
  EXPECT_TRUE(at::equal(grads[0], grads[2]));
}

INSTANTIATE_TEST_SUITE_P(Isa, AddRmsNorm, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Avx2" : "Baseline"; });

// A bf16 model (no autocast): transformers rounds the float32 normalised value to bf16, then
// multiplies by the bf16 weight in bf16. The ATen path keeps that.
TEST(AddRmsNormAten, Bf16ResidualRoundsLikeTransformers) {
  at::manual_seed(7);
  const auto r = at::randn({4, 40}).to(at::kBFloat16), b = at::randn({4, 40}).to(at::kBFloat16);
  const auto w = at::randn({40}).to(at::kBFloat16);
  const auto [sum, normed] = add_rms_norm(r, b, w, 1e-6);
  EXPECT_EQ(sum.scalar_type(), at::kBFloat16);
  EXPECT_EQ(normed.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(sum, r + b));
  const auto s = (r + b).to(at::kFloat);
  const auto want = w * (s * at::rsqrt(s.pow(2).mean({-1}, true) + 1e-6)).to(at::kBFloat16);
  EXPECT_TRUE(at::equal(normed, want));
}

// Under CPU autocast the model asks for bf16 normed activations; a linear reading them gives
// what it gives on the float32 norm (autocast casts its input to bf16 either way).
TEST(AddRmsNormAten, LinearUnderAutocastSeesTheSameInput) {
  at::manual_seed(8);
  const auto r = at::randn({5, 64}), b = at::randn({5, 64}), w = at::randn({64});
  const auto lin = at::randn({32, 64});
  at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCPU, true);
  const auto direct = at::linear(add_rms_norm(r, b, w, 1e-5, at::kBFloat16).second, lin);
  const auto cast = at::linear(add_rms_norm(r, b, w, 1e-5).second, lin);
  at::autocast::set_autocast_enabled(at::kCPU, false);
  at::autocast::clear_cache();
  EXPECT_EQ(direct.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(direct, cast));
}

TEST(AddRmsNormAten, RejectsMismatchedShapes) {
  const auto r = at::randn({4, 16});
  EXPECT_THROW(add_rms_norm(r, at::randn({4, 15}), at::randn({16}), 1e-5), c10::Error);
  EXPECT_THROW(add_rms_norm(r, at::randn({4, 16}), at::randn({15}), 1e-5), c10::Error);
  EXPECT_THROW(rms_norm(r, at::randn({2, 16}), 1e-5), c10::Error);
}

TEST(AddRmsNormAten, EmptyRowsGiveEmptyOutputs) {
  const auto r = at::randn({0, 16}), b = at::randn({0, 16});
  const auto [sum, normed] = add_rms_norm(r, b, at::randn({16}), 1e-5);
  EXPECT_EQ(sum.sizes(), r.sizes());
  EXPECT_EQ(normed.sizes(), r.sizes());
}

}  // namespace
}  // namespace posttrain::kernels
