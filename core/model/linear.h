// Linear layers of the model (no bias) with float32 master weights under autocast. ATen's
// autocast casts a float32 weight to bf16 on every call and differentiates that cast, so each
// weight gradient comes out of cuBLAS in bf16 and is cast to float32 in a separate pass; and
// every linear reading the same activation casts (and saves) its own bf16 copy of it. Here,
// under autocast, one autograd Function casts the input once and the weights once, runs the
// GEMMs in the autocast dtype, saves only the bf16 operands, and writes each weight's gradient
// straight in float32 (bf16 operands, float32 accumulation and output: aten::mm.dtype on CUDA,
// the same maths through upcast operands on CPU). Outside autocast these are plain at::linear.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace posttrain::core {

// y = x @ weight^T. x: [..., in], weight: [out, in] -> [..., out]. Under autocast on x's device
// with a float32 weight, y is in the autocast dtype and the weight's gradient float32 (see top).
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight);

// How linear_fused lays out its outputs.
enum class FusedLayout {
  // One GEMM against the weights stacked along the output dim; output i is the column block
  // [..., out_i] of one [..., sum out_i] result (a view whose rows have stride sum out_i).
  // For consumers that read strided rows anyway (attention's q, k, v).
  kStacked,
  // One GEMM per weight into its own contiguous [..., out_i]; the input is still cast and saved
  // once, and backward sums the input's gradient over the weights in one buffer. For consumers
  // that would copy a strided view (the SwiGLU kernels read contiguous gate and up).
  kSeparate,
};

// x against several weights that share x's in-features: the same values as linear(x, w_i)
// each. weights: [out_i, in], at least one. Returns one tensor per weight, [..., out_i].
std::vector<at::Tensor> linear_fused(const at::Tensor& x, at::TensorList weights,
                                     FusedLayout layout = FusedLayout::kStacked);

// a @ b (2-D) with the result in out_dtype. When out_dtype is float32 and a, b are bf16/fp16,
// products are accumulated in float32 and never rounded to the operands' dtype: on CUDA one
// cuBLAS call (aten::mm.dtype), elsewhere an mm of the upcast operands (bf16 products are exact
// in float32, so it is the same maths).
at::Tensor mm_as(const at::Tensor& a, const at::Tensor& b, at::ScalarType out_dtype);

// acc += a @ b in acc's dtype, with the same float32 accumulation as mm_as when acc is float32
// and a, b are bf16/fp16 (on CUDA into acc in place through aten::addmm.dtype, or if this
// LibTorch refuses a float32 acc there, mm_as then add).
void addmm_as_(at::Tensor& acc, const at::Tensor& a, const at::Tensor& b);

}  // namespace posttrain::core
