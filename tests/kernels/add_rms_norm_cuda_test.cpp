// Our CUDA add_rms_norm / rms_norm kernels (kernels/cuda/rms_norm.cu) against a float64 CPU
// reference built from plain ATen ops that rounds where the kernel's contract rounds (the sum
// to the residual's dtype, a bf16 residual's normalised value to bf16), straight through for
// gradients: values, the sum, and the gradients of residual, branch and weight, for float32 and
// bf16 data in the combinations the model uses, over widths that take each vectorised shape (1,
// 2 and 4 packs of 8 per thread), widths that take the scalar kernels (not a multiple of 8, or
// above 8192), and misaligned views. Also the exact properties activation checkpointing and
// autocast rely on, and a run-to-run identical weight gradient. Skips without CUDA. (Speed is
// measured by bench/, not here.)
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <algorithm>
#include <string>
#include <vector>

#include "float64_checks.h"
#include "kernels/rms_norm.h"

namespace posttrain::kernels {
namespace {

using reference::expect_near;

struct Config {
  std::string name;
  at::ScalarType res, branch, weight, out;
  bool has_branch;
};

const std::vector<Config>& configs() {
  static const std::vector<Config> all = {
      {"float32", at::kFloat, at::kFloat, at::kFloat, at::kFloat, true},
      {"autocast (float32 stream, bf16 branch and out)", at::kFloat, at::kBFloat16, at::kFloat,
       at::kBFloat16, true},
      {"autocast first layer (no branch, bf16 out)", at::kFloat, at::kFloat, at::kFloat,
       at::kBFloat16, false},
      {"bf16 model", at::kBFloat16, at::kBFloat16, at::kBFloat16, at::kBFloat16, true},
      {"bf16 data, float32 weight and out", at::kBFloat16, at::kBFloat16, at::kFloat, at::kFloat,
       true},
      {"float32 no branch", at::kFloat, at::kFloat, at::kFloat, at::kFloat, false},
  };
  return all;
}

double value_tol(const Config& c) {
  if (c.res == at::kBFloat16) return 1.0 / 128;  // two bf16 roundings (normalised value, out)
  if (c.out == at::kBFloat16) return 1.0 / 256;  // one
  return 1e-5;
}
double grad_tol(at::ScalarType t, const Config& c) {
  if (t == at::kBFloat16 || c.res == at::kBFloat16) return 1.0 / 128;
  return 1e-4;
}

// x rounded to dtype, as a float64 value with x's gradient (straight through).
at::Tensor round_through(const at::Tensor& x, at::ScalarType dtype) {
  if (dtype == at::kDouble) return x;
  return x + (x.detach().to(dtype).to(at::kDouble) - x.detach());
}

// One configuration on random [rows, h] data; the CUDA residual, branch and gradients are views
// `offset` elements into a larger buffer when offset > 0 (misaligned for the 16-byte loads).
void check(const Config& c, int64_t rows, int64_t h, int64_t offset = 0) {
  SCOPED_TRACE(c.name + " rows=" + std::to_string(rows) + " h=" + std::to_string(h) +
               " offset=" + std::to_string(offset));
  const double eps = 1e-5;
  const auto r0 = (at::randn({rows, h}) * 2).to(c.res);
  const auto b0 = at::randn({rows, h}).to(c.branch);
  const auto w0 = (at::rand({h}) + 0.5).to(c.weight);
  const auto g0 = at::randn({rows, h}).to(c.out);
  const auto gs0 = at::randn({rows, h}).to(c.res);
  // CUDA copies, optionally living `offset` elements into a larger buffer.
  auto on_gpu = [&](const at::Tensor& t) {
    if (offset == 0) return t.cuda();
    auto buf = at::empty({t.numel() + offset}, t.options().device(at::kCUDA));
    auto view = buf.narrow(0, offset, t.numel()).view(t.sizes());
    view.copy_(t);
    return view;
  };
  auto r = on_gpu(r0).requires_grad_(true);
  auto b = on_gpu(b0).requires_grad_(true);
  auto w = w0.cuda().requires_grad_(true);
  const auto [sum, normed] = add_rms_norm(r, c.has_branch ? b : at::Tensor(), w, eps, c.out);
  ASSERT_EQ(sum.scalar_type(), c.res);
  ASSERT_EQ(normed.scalar_type(), c.out);
  ASSERT_TRUE(normed.is_cuda());

  // The sum: exactly what ATen's add gives (float32 maths, rounded once to the residual type).
  const auto want_sum = c.has_branch ? (r0 + b0).to(c.res) : r0;
  EXPECT_TRUE(at::equal(sum.detach().cpu(), want_sum));

  // float64 reference.
  auto rd = r0.to(at::kDouble).requires_grad_(true);
  auto bd = b0.to(at::kDouble).requires_grad_(true);
  auto wd = w0.to(at::kDouble).requires_grad_(true);
  const auto sd = round_through(c.has_branch ? rd + bd : rd, c.res);
  auto nd = sd * at::rsqrt(sd.pow(2).mean({-1}, true) + eps);
  if (c.res == at::kBFloat16) nd = round_through(nd, at::kBFloat16);
  const auto yd = wd * nd;
  expect_near(normed, yd, value_tol(c), "normed");

  // Gradients: loss = <normed, g> + <sum, gs> (the sum's term only when it is a separate output).
  const auto g = on_gpu(g0), gs = on_gpu(gs0);
  if (c.has_branch) {
    torch::autograd::backward({normed, sum}, {g, gs});
    ((yd * g0.to(at::kDouble)).sum() + (sd * gs0.to(at::kDouble)).sum()).backward();
  } else {
    normed.backward(g);
    (yd * g0.to(at::kDouble)).sum().backward();
  }
  ASSERT_EQ(r.grad().scalar_type(), c.res);
  ASSERT_EQ(w.grad().scalar_type(), c.weight);
  expect_near(r.grad(), rd.grad(), grad_tol(c.res, c), "d residual");
  expect_near(w.grad(), wd.grad(), grad_tol(c.weight, c), "d weight");
  if (c.has_branch) {
    ASSERT_EQ(b.grad().scalar_type(), c.branch);
    expect_near(b.grad(), bd.grad(), grad_tol(c.branch, c), "d branch");
    // Both from the same float32 value.
    EXPECT_TRUE(at::equal(b.grad().cpu(), r.grad().cpu().to(c.branch)));
  }
}

TEST(CudaAddRmsNorm, VectorisedWidthsMatchFloat64) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(0);
  // 8 and 64: one warp; 576: smol-135m; 1000: 125 packs; 2048, 4096, 8192: 1, 2, 4 packs per
  // thread at 256 threads.
  for (const auto& c : configs()) {
    for (const int64_t h : {8, 64, 576, 1000, 2048, 4096, 8192}) {
      for (const int64_t rows : {1, 3, 257}) check(c, rows, h);
    }
  }
}

TEST(CudaAddRmsNorm, ScalarWidthsMatchFloat64) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(1);
  // Not a multiple of 8, or too wide for 4 packs per thread at 256 threads. (Not h = 1: there
  // the norm's gradient is a difference of nearly equal terms, ill-conditioned in float32.)
  for (const auto& c : configs()) {
    for (const int64_t h : {3, 37, 300, 8200, 20001}) {
      for (const int64_t rows : {1, 5, 130}) check(c, rows, h);
    }
  }
}

TEST(CudaAddRmsNorm, MisalignedViewsTakeTheScalarKernelsAndMatchFloat64) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(2);
  for (const auto& c : configs()) {
    for (const int64_t h : {64, 2048}) {
      check(c, 7, h, /*offset=*/1);
      check(c, 7, h, /*offset=*/4);  // 8 bytes (bf16) / 16 bytes (float32) in
    }
  }
}

// Many rows per backward block (the grid is 8 blocks per SM): the reduction order must still
// give the same weight gradient every time.
TEST(CudaAddRmsNorm, WeightGradientIsTheSameEveryRun) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(3);
  for (const int64_t h : {2048, 37}) {
    const auto r0 = at::randn({4099, h}, at::kCUDA), b0 = at::randn({4099, h}, at::kCUDA);
    const auto w0 = at::randn({h}, at::kCUDA), g = at::randn({4099, h}, at::kCUDA);
    std::vector<at::Tensor> grads;
    for (int run = 0; run < 3; ++run) {
      auto r = r0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
      auto w = w0.clone().requires_grad_(true);
      add_rms_norm(r, b, w, 1e-5).second.backward(g);
      grads.push_back(w.grad().cpu());
    }
    EXPECT_TRUE(at::equal(grads[0], grads[1]));
    EXPECT_TRUE(at::equal(grads[0], grads[2]));
    // And right: against float64.
    auto wd = w0.cpu().to(at::kDouble);
    const auto sd = (r0 + b0).cpu().to(at::kDouble);
    const auto nd = sd * at::rsqrt(sd.pow(2).mean({-1}, true) + 1e-5);
    const auto want = (g.cpu().to(at::kDouble) * nd).sum(0);
    expect_near(grads[0], want, 1e-4, "d weight");
  }
}

// Activation checkpointing saves the sum and recomputes the norm from it; autocast's bf16 out
// must be the float32 result rounded once.
TEST(CudaAddRmsNorm, ExactPropertiesTheModelReliesOn) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(4);
  for (const int64_t h : {2048, 37}) {
    const auto r = at::randn({33, h}, at::kCUDA);
    const auto b = at::randn({33, h}, at::kCUDA).to(at::kBFloat16);
    const auto w = at::randn({h}, at::kCUDA);
    const auto [s32, n32] = add_rms_norm(r, b, w, 1e-5);
    const auto [s16, n16] = add_rms_norm(r, b, w, 1e-5, at::kBFloat16);
    EXPECT_EQ(n32.scalar_type(), at::kFloat);
    EXPECT_TRUE(at::equal(s32, r + b));
    EXPECT_TRUE(at::equal(s16, s32));
    EXPECT_TRUE(at::equal(n16, n32.to(at::kBFloat16)));
    EXPECT_TRUE(at::equal(rms_norm(s32, w, 1e-5), n32));
    EXPECT_TRUE(at::equal(rms_norm(s32, w, 1e-5, at::kBFloat16), n16));
    // The same kernels as the CPU loop's formula, to float32 accuracy.
    const auto cpu = add_rms_norm(r.cpu(), b.cpu(), w.cpu(), 1e-5).second;
    EXPECT_TRUE(at::allclose(n32.cpu(), cpu, 1e-5, 1e-5));
  }
}

// The final norm's sum goes unused (its gradient is undefined); a sum read without its norm.
TEST(CudaAddRmsNorm, EitherOutputMayGoUnused) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(5);
  const auto r0 = at::randn({9, 256}, at::kCUDA);
  const auto b0 = at::randn({9, 256}, at::kCUDA).to(at::kBFloat16);
  const auto w0 = at::randn({256}, at::kCUDA);
  const auto g = at::randn({9, 256}, at::kCUDA);
  {
    auto r = r0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
    auto w = w0.clone().requires_grad_(true);
    add_rms_norm(r, b, w, 1e-5).second.backward(g);
    auto rd = r0.cpu().to(at::kDouble).requires_grad_(true);
    const auto sd = rd + b0.cpu().to(at::kDouble);
    (w0.cpu().to(at::kDouble) * (sd * at::rsqrt(sd.pow(2).mean({-1}, true) + 1e-5)))
        .backward(g.cpu().to(at::kDouble));
    expect_near(r.grad(), rd.grad(), 1e-4, "d residual");
    EXPECT_TRUE(at::equal(b.grad().cpu(), r.grad().cpu().to(at::kBFloat16)));
  }
  {
    auto r = r0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
    auto w = w0.clone().requires_grad_(true);
    add_rms_norm(r, b, w, 1e-5).first.backward(g);
    EXPECT_TRUE(at::equal(r.grad(), g));
    EXPECT_TRUE(at::equal(b.grad(), g.to(at::kBFloat16)));
    EXPECT_EQ(w.grad().abs().max().item<float>(), 0.0f);
  }
}

// Leading dimensions are kept and strided inputs are copied first.
TEST(CudaAddRmsNorm, KeepsShapesAndTakesStridedInput) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(6);
  const auto base = at::randn({16, 4, 64}, at::kCUDA);
  const auto x = base.transpose(0, 1);  // [4, 16, 64]
  const auto w = at::randn({64}, at::kCUDA);
  const auto y = rms_norm(x, w, 1e-6);
  EXPECT_EQ(y.sizes(), x.sizes());
  const auto xd = x.cpu().to(at::kDouble);
  expect_near(y, w.cpu().to(at::kDouble) * (xd * at::rsqrt(xd.pow(2).mean({-1}, true) + 1e-6)),
              1e-5, "normed");
}

}  // namespace
}  // namespace posttrain::kernels
