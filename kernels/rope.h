// Rotary position embedding applied to q or k in the projection's layout [B, T, heads, dim]:
// x * cos + rotate_half(x) * sin with cos/sin [B, T, dim], rotate_half(x) = cat(-x2, x1).
// Differentiable in x (cos and sin come from positions and take no gradient). On CUDA builds
// with our kernels it is one fused pass each way; elsewhere the ATen ops transformers uses.
#pragma once

#include <ATen/core/Tensor.h>

namespace posttrain::kernels {

// x [B, T, H, D] (float32 or bf16); cos, sin [B, T, D]. Returns [B, T, H, D] in x's dtype.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace posttrain::kernels
