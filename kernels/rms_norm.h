// RMSNorm as transformers computes it: y = weight * (x * rsqrt(mean(x^2, last dim) + eps)), the
// normalisation in float32. On CPU float32 it is one fused pass each way (our loops, see
// cpu_vec.h) that keeps only x and the per-row 1/rms for backward; elsewhere (CUDA, bf16) ATen's
// ops: at::rms_norm for float32, the cast-to-float32 formula for lower precision.
#pragma once

#include <ATen/core/Tensor.h>

namespace posttrain::kernels {

// x [..., H]; weight [H] of x's dtype. Returns x's shape and dtype; differentiable in both.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace posttrain::kernels
