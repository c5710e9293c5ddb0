// Launchers of our CUDA kernels: raw device pointers, sizes and a cudaStream_t passed as void*,
// so this header (and the .cu files) need no ATen. The at::Tensor wrappers in kernels/*.cpp
// check shapes, dtypes and contiguity and pick the stream. dtype: 0 = float32, 1 = bfloat16.
#pragma once

#include <cstdint>

namespace posttrain::kernels::cuda {

enum class DType : int { kFloat32 = 0, kBFloat16 = 1 };

// Per row r of logits [rows, vocab]: lse[r] = logsumexp(logits[r]) and
// lp[r] = logits[r, targets[r]] - lse[r] (float32 maths; targets all in [0, vocab)).
void logprob_rows_forward(const void* logits, DType dtype, const int64_t* targets, int64_t rows,
                          int64_t vocab, float* lse, float* lp, void* stream);

// In place: logits[r, j] <- grad[r] * (onehot(targets[r])[j] - exp(logits[r, j] - lse[r])),
// the gradient of sum_r grad[r] * lp[r] with respect to the logits.
void logprob_rows_backward_inplace(void* logits, DType dtype, const int64_t* targets,
                                   const float* lse, const float* grad, int64_t rows,
                                   int64_t vocab, void* stream);

// Rotary embedding on x [rows * heads, dim] (rows = B*T, contiguous) with cos/sin [rows, dim]
// (dtype of x, or float32 when cos_dtype says so): out = x * cos + rotate_half(x) * sin, where
// rotate_half(x) = cat(-x[half:], x[:half]). backward = true applies the transpose (the
// gradient with respect to x, given the gradient of out in x's place).
void rope(const void* x, DType dtype, const void* cos, const void* sin, DType cos_dtype,
          int64_t rows, int64_t heads, int64_t dim, bool backward, void* out, void* stream);

// SwiGLU: out = silu(gate) * up over n elements.
void swiglu_forward(const void* gate, const void* up, DType dtype, int64_t n, void* out,
                    void* stream);
// grad_gate = g * up * silu'(gate), grad_up = g * silu(gate).
void swiglu_backward(const void* grad, const void* gate, const void* up, DType dtype, int64_t n,
                     void* grad_gate, void* grad_up, void* stream);

}  // namespace posttrain::kernels::cuda
