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

// Rotary embedding on x [rows, heads, dim] (rows = B*T; row r starts at x + r * x_row_stride,
// heads and dim contiguous within a row) with cos/sin [rows, dim]
// (dtype of x, or float32 when cos_dtype says so): out = x * cos + rotate_half(x) * sin, where
// rotate_half(x) = cat(-x[half:], x[:half]). backward = true applies the transpose (the
// gradient with respect to x, given the gradient of out in x's place).
// out is contiguous [rows, heads, dim].
void rope(const void* x, int64_t x_row_stride, DType dtype, const void* cos, const void* sin,
          DType cos_dtype, int64_t rows, int64_t heads, int64_t dim, bool backward, void* out,
          void* stream);

// SwiGLU: out = silu(gate) * up over n elements.
void swiglu_forward(const void* gate, const void* up, DType dtype, int64_t n, void* out,
                    void* stream);
// grad_gate = g * up * silu'(gate), grad_up = g * silu(gate).
void swiglu_backward(const void* grad, const void* gate, const void* up, DType dtype, int64_t n,
                     void* grad_gate, void* grad_up, void* stream);

// RMSNorm over rows [rows, h], optionally after a residual add (float32 maths throughout):
//   x = residual + branch, written to sum_out in residual's dtype (branch null: x = residual,
//   nothing written), r = 1 / sqrt(mean(x^2) + eps) per row (float32, to rstd[rows]),
//   out = weight * (x * r) in out_dtype. The norm reads x as stored (rounded to residual's
//   dtype); with a bf16 residual x * r is rounded to bf16 before the weight multiply, as
//   transformers' LlamaRMSNorm does. weight is float32 [h]. 16-byte vector loads when h % 8 == 0
//   and every pointer is 16-byte aligned, a scalar path otherwise; the result does not depend on
//   whether branch is given (add then norm equals norm of the stored sum, bit for bit).
void add_rms_norm_forward(const void* residual, DType residual_dtype, const void* branch,
                          DType branch_dtype, const float* weight, int64_t rows, int64_t h,
                          float eps, void* sum_out, void* out, DType out_dtype, float* rstd,
                          void* stream);

// Rows of float32 partial weight gradients add_rms_norm_backward writes to its workspace
// ([partials, h]); depends only on rows and the current device's SM count, so the reduction
// order, and so the result, is the same on every run.
int64_t add_rms_norm_partials(int64_t rows);

// Backward of add_rms_norm_forward, one pass over the rows: with gw = grad_out * weight,
//   d_x = r * gw - x * r^3 * mean(gw * x) + grad_sum   (grad_sum null: no term),
// written to grad_residual (residual's dtype) and, unless null, grad_branch (branch_dtype), both
// from the float32 value;
// grad_weight[h] (float32) = sum over rows of grad_out * (x * r), reduced in two fixed-order
// stages through workspace [add_rms_norm_partials(rows), h], with no atomics. x is the stored
// sum (or the residual when there was no branch), grad_out is in out_dtype, grad_sum in
// residual's dtype.
void add_rms_norm_backward(const void* grad_out, DType out_dtype, const void* grad_sum,
                           const void* x, DType residual_dtype, const float* weight,
                           const float* rstd, int64_t rows, int64_t h, void* grad_residual,
                           void* grad_branch, DType branch_dtype, float* workspace,
                           float* grad_weight, void* stream);

}  // namespace posttrain::kernels::cuda
