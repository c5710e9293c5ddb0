// Shared by the kernels' CUDA tests: comparison against a float64 CPU reference, and the
// reference rotary embedding.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <algorithm>

#define SKIP_WITHOUT_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

namespace posttrain::kernels::reference {

// max |ours - ref| <= tol * max |ref| (ref float64 on the CPU).
inline void expect_near(const at::Tensor& ours, const at::Tensor& ref, double tol,
                        const char* what) {
  ASSERT_TRUE(ours.defined()) << what;
  ASSERT_EQ(ours.sizes(), ref.sizes()) << what;
  const auto a = ours.detach().cpu().to(at::kDouble);
  const double scale = std::max(ref.abs().max().item<double>(), 1e-30);
  const double err = (a - ref).abs().max().item<double>();
  EXPECT_TRUE(a.isfinite().all().item<bool>()) << what;
  EXPECT_LE(err, tol * scale) << what << ": max abs error " << err << ", reference scale "
                              << scale;
}

// Rotary embedding by its definition: x [B, T, H, D], cos/sin [B, T, D] (float64):
// x * cos + rotate_half(x) * sin with rotate_half(x) = cat(-x[D/2:], x[:D/2]).
inline at::Tensor rope_reference(const at::Tensor& x, const at::Tensor& cos,
                                 const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const auto rot = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos.unsqueeze(2) + rot * sin.unsqueeze(2);
}

}  // namespace posttrain::kernels::reference
