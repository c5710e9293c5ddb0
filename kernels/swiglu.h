// SwiGLU's elementwise part, silu(gate) * up, differentiable in both. On CUDA builds with our
// kernels it is one pass each way and keeps only gate and up for backward; elsewhere ATen's
// silu and multiply.
#pragma once

#include <ATen/core/Tensor.h>

namespace posttrain::kernels {

// gate, up: same shape and dtype (float32 or bf16). Returns silu(gate) * up.
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up);

}  // namespace posttrain::kernels
