// Our vectorised CUDA kernels for SwiGLU, RoPE and the log-prob rows (kernels/cuda/*.cu: packs of
// 8 through 16-byte accesses, a scalar tail, scalar kernels for misaligned pointers or widths
// that do not split into packs) against float64 CPU references: values and gradients, float32
// and bf16, at sizes with and without a tail, and on views shifted off the 16-byte alignment
// (a narrow() of a larger buffer) so both paths of each kernel run; and operands the kernels do
// not take (other dtypes, host tensors) handled by the wrappers. Skips without a CUDA device.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "float64_checks.h"
#include "kernels/logprob_rows.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"

namespace posttrain::kernels {
namespace {

using reference::expect_near;

// A CUDA copy of t living `offset` elements into a larger buffer (offset 0: a plain copy).
at::Tensor on_gpu(const at::Tensor& t, int64_t offset) {
  if (offset == 0) return t.cuda();
  auto buf = at::zeros({t.numel() + offset}, t.options().device(at::kCUDA));
  auto view = buf.narrow(0, offset, t.numel()).view(t.sizes());
  view.copy_(t);
  return view;
}

double tol_for(at::ScalarType t) { return t == at::kFloat ? 1e-5 : 1.0 / 128; }

const char* name_of(at::ScalarType t) { return t == at::kFloat ? "float32" : "bf16"; }

TEST(CudaVectorised, SwigluOddSizesAndMisalignedViewsMatchFloat64) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(0);
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    for (const int64_t n : {1, 7, 8, 9, 4101, (1 << 20) + 3}) {
      // 0: aligned; 1: every pointer misaligned; 8: 16 bytes in for bf16 (aligned), 32 for
      // float32 (aligned too), so the vector path again after an offset.
      for (const int64_t offset : {0, 1, 8}) {
        SCOPED_TRACE(std::string(name_of(dtype)) + " n=" + std::to_string(n) +
                     " offset=" + std::to_string(offset));
        const auto g0 = (at::randn({n}) * 3).to(dtype), u0 = at::randn({n}).to(dtype);
        const auto d0 = at::randn({n}).to(dtype);
        auto g = on_gpu(g0, offset).requires_grad_(true);
        auto u = on_gpu(u0, 0).requires_grad_(true);  // mixed alignment when offset is odd
        const auto out = swiglu(g, u);
        ASSERT_EQ(out.scalar_type(), dtype);
        out.backward(on_gpu(d0, offset));
        const auto gd = g0.to(at::kDouble), ud = u0.to(at::kDouble), dd = d0.to(at::kDouble);
        const auto sig = at::sigmoid(gd);
        expect_near(out, gd * sig * ud, tol_for(dtype), "out");
        expect_near(g.grad(), dd * ud * sig * (1 + gd * (1 - sig)), tol_for(dtype), "d gate");
        expect_near(u.grad(), dd * gd * sig, tol_for(dtype), "d up");
      }
    }
  }
}

TEST(CudaVectorised, RopeWidthsAndMisalignedViewsMatchFloat64) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(1);
  const int64_t B = 2, T = 5, H = 3;
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    for (const auto cos_dtype : {dtype, at::kFloat}) {
      // 64, 128: packs of 8 pairs; 24 (12 pairs), 6 (3 pairs): the scalar kernel.
      for (const int64_t D : {64, 128, 24, 6}) {
        for (const int64_t offset : {0, 1}) {
          SCOPED_TRACE(std::string(name_of(dtype)) + " cos " + name_of(cos_dtype) +
                       " D=" + std::to_string(D) + " offset=" + std::to_string(offset));
          const auto x0 = at::randn({B, T, H, D}).to(dtype);
          const auto ang = at::randn({B, T, D}) * 3;
          const auto c0 = ang.cos().to(cos_dtype), s0 = ang.sin().to(cos_dtype);
          const auto d0 = at::randn({B, T, H, D}).to(dtype);
          auto x = on_gpu(x0, offset).requires_grad_(true);
          const auto out = apply_rope(x, on_gpu(c0, offset), on_gpu(s0, offset));
          ASSERT_EQ(out.scalar_type(), dtype);
          out.backward(on_gpu(d0, offset));
          auto xd = x0.to(at::kDouble).requires_grad_(true);
          const auto want =
              reference::rope_reference(xd, c0.to(at::kDouble), s0.to(at::kDouble));
          want.backward(d0.to(at::kDouble));
          expect_near(out, want, tol_for(dtype), "out");
          expect_near(x.grad(), xd.grad(), tol_for(dtype), "d x");
        }
      }
    }
  }
}

// q and k as the model makes them: column blocks of one [B, T, S] q/k/v GEMM output viewed as
// [B, T, heads, D], so rows are strided by S; the kernel reads them in place (T = 1 and B = 1
// too, where one of the strides is arbitrary).
TEST(CudaVectorised, RopeOnColumnBlocksOfAStackedProjectionMatchesFloat64) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(2);
  const int64_t H = 4, KV = 2;
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    for (const int64_t D : {64, 6}) {
      for (const auto& bt : std::vector<std::pair<int64_t, int64_t>>{{2, 5}, {3, 1}, {1, 4}}) {
        const int64_t B = bt.first, T = bt.second, S = (H + 2 * KV) * D;
        SCOPED_TRACE(std::string(name_of(dtype)) + " D=" + std::to_string(D) +
                     " B=" + std::to_string(B) + " T=" + std::to_string(T));
        const auto qkv0 = at::randn({B, T, S}).to(dtype);
        const auto ang = at::randn({B, T, D}) * 3;
        const auto c0 = ang.cos().to(dtype), s0 = ang.sin().to(dtype);
        for (const auto& block : std::vector<std::pair<int64_t, int64_t>>{{0, H}, {H, KV}}) {
          const int64_t heads = block.second;
          auto qkv = qkv0.cuda().requires_grad_(true);
          const auto x = qkv.narrow(2, block.first * D, heads * D).view({B, T, heads, D});
          const auto out = apply_rope(x, c0.cuda(), s0.cuda());
          ASSERT_TRUE(out.is_contiguous());
          const auto d0 = at::randn({B, T, heads, D}).to(dtype);
          out.backward(d0.cuda());
          auto xd = qkv0.to(at::kDouble).narrow(2, block.first * D, heads * D)
                        .reshape({B, T, heads, D}).requires_grad_(true);
          const auto want =
              reference::rope_reference(xd, c0.to(at::kDouble), s0.to(at::kDouble));
          want.backward(d0.to(at::kDouble));
          expect_near(out, want, tol_for(dtype), "out");
          expect_near(qkv.grad().narrow(2, block.first * D, heads * D).reshape({B, T, heads, D}),
                      xd.grad(), tol_for(dtype), "d x");
        }
      }
    }
  }
}

TEST(CudaVectorised, LogprobRowsVocabulariesAndMisalignedLogitsMatchFloat64) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(2);
  const int64_t M = 37;
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    // 1024, 32000, 8: packs of 8; 1003, 5: the scalar loop.
    for (const int64_t V : {1024, 32000, 8, 1003, 5}) {
      for (const int64_t offset : {0, 1}) {
        SCOPED_TRACE(std::string(name_of(dtype)) + " V=" + std::to_string(V) +
                     " offset=" + std::to_string(offset));
        const auto l0 = (at::randn({M, V}) * 4).to(dtype);
        const auto t0 = at::randint(0, V, {M}, at::kLong);
        const auto g0 = at::randn({M});
        auto logits = on_gpu(l0, offset);
        const auto [lse, lp] = logprob_rows_forward(logits, t0.cuda(), 8);
        const auto ld = l0.to(at::kDouble);
        const auto want_lse = at::logsumexp(ld, {1});
        const auto want_lp = ld.gather(1, t0.unsqueeze(1)).squeeze(1) - want_lse;
        expect_near(lse, want_lse, 1e-5, "lse");
        // The log-probs against the scale of the logits (a log-prob near 0 has no scale).
        EXPECT_LE((lp.cpu().to(at::kDouble) - want_lp).abs().max().item<double>(),
                  1e-5 * ld.abs().max().item<double>());
        logprob_rows_backward_(logits, t0.cuda(), lse, g0.cuda(), 8);
        const auto onehot = at::zeros({M, V}, at::kDouble).scatter_(1, t0.unsqueeze(1), 1.0);
        const auto want_d = g0.to(at::kDouble).unsqueeze(1) * (onehot - at::softmax(ld, 1));
        expect_near(logits, want_d, dtype == at::kFloat ? 1e-5 : 1.0 / 64, "d logits");
      }
    }
  }
}

// Operands the kernels do not take go to ATen (or are moved) rather than failing or being misread:
// SwiGLU and the log-prob rows in half, RoPE with sin in another dtype than cos (the kernel reads
// both tables as cos's dtype), the log-prob rows with targets, lse and grad on the CPU (a kernel
// would read host memory).
TEST(CudaVectorised, OtherDtypesAndHostOperandsAreHandled) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(3);
  const auto g0 = at::randn({4, 33}).to(at::kHalf), u0 = at::randn({4, 33}).to(at::kHalf);
  const auto out = swiglu(g0.cuda(), u0.cuda());
  ASSERT_EQ(out.scalar_type(), at::kHalf);
  const auto gd = g0.to(at::kDouble), ud = u0.to(at::kDouble);
  expect_near(out, gd * at::sigmoid(gd) * ud, 1.0 / 256, "swiglu half");

  const auto x0 = at::randn({2, 3, 2, 16}), ang = at::randn({2, 3, 16});
  const auto c0 = ang.cos(), s0 = ang.sin().to(at::kBFloat16);
  const auto y = apply_rope(x0.cuda(), c0.cuda(), s0.cuda());
  ASSERT_EQ(y.scalar_type(), at::kFloat);
  expect_near(y,
              reference::rope_reference(x0.to(at::kDouble), c0.to(at::kDouble),
                                        s0.to(at::kDouble)),
              1e-5, "rope, float32 cos and bf16 sin");

  const int64_t M = 5, V = 40;
  const auto l0 = at::randn({M, V}) * 3;
  const auto t0 = at::randint(0, V, {M}, at::kLong);
  const auto g = at::randn({M});
  const auto ld = l0.to(at::kDouble);
  const auto want_lse = at::logsumexp(ld, {1});
  const auto want_d =
      g.to(at::kDouble).unsqueeze(1) *
      (at::zeros({M, V}, at::kDouble).scatter_(1, t0.unsqueeze(1), 1.0) - at::softmax(ld, 1));
  {
    auto logits = l0.cuda();
    const auto [lse, lp] = logprob_rows_forward(logits, t0, 8);  // targets on the CPU
    expect_near(lse, want_lse, 1e-5, "lse, host targets");
    logprob_rows_backward_(logits, t0, lse.cpu(), g, 8);  // targets, lse, grad on the CPU
    expect_near(logits, want_d, 1e-5, "d logits, host operands");
  }
  {
    auto logits = l0.to(at::kHalf).cuda();
    const auto [lse, lp] = logprob_rows_forward(logits, t0.cuda(), 8);
    const auto lh = l0.to(at::kHalf).to(at::kDouble);
    expect_near(lse, at::logsumexp(lh, {1}), 1e-5, "lse, half logits");
    expect_near(lp, lh.gather(1, t0.unsqueeze(1)).squeeze(1) - at::logsumexp(lh, {1}), 1e-5,
                "log-probs, half logits");
  }
}

}  // namespace
}  // namespace posttrain::kernels
