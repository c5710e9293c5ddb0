// RMSNorm as transformers computes it: y = weight * (x * rsqrt(mean(x^2, last dim) + eps)), the
// normalisation in float32, and the same fused with the residual add before it
// (add_rms_norm: the pre-norm decoder's h = x + branch; norm(h)). Three paths: our CUDA kernels
// (CUDA builds, float32 / bf16, one pass each way), one fused CPU float32 loop each way (see
// cpu_vec.h) that keeps only the input and the per-row 1/rms for backward, and ATen's ops
// elsewhere. An output dtype lets the norm write the autocast dtype directly (the value
// autocast's cast in the next linear would give), so the linears that read it do not each cast
// a float32 copy.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <utility>

namespace posttrain::kernels {

// x [..., H]; weight [H]. Returns x's shape in out_dtype (default: the type transformers'
// `weight * normed` has, the promotion of x's and weight's dtypes), differentiable in both. The
// normalisation runs in float32; a lower-precision x's normalised value is rounded to x's dtype
// before the weight multiply, as transformers does.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps,
                    std::optional<at::ScalarType> out_dtype = std::nullopt);

// residual [..., H], branch of residual's shape (or undefined: no add), weight [H]. Returns
// {sum, normed}: sum = residual + branch in residual's dtype (residual itself when branch is
// undefined) and normed = rms_norm(sum, weight, eps, out_dtype), computed in one pass.
// Differentiable in residual, branch and weight: d_residual = d_sum + (the norm's backward of
// d_normed), d_branch the same in branch's dtype.
std::pair<at::Tensor, at::Tensor> add_rms_norm(
    const at::Tensor& residual, const at::Tensor& branch, const at::Tensor& weight, double eps,
    std::optional<at::ScalarType> out_dtype = std::nullopt);

}  // namespace posttrain::kernels
