// Rotary embedding in one pass over q or k laid out [B*T, heads, dim] (the projection's own
// layout, before the transpose for attention): each thread rotates one (i, i + dim/2) pair in
// float32 and writes both outputs, instead of the five elementwise kernels (two multiplies, a
// negation, a concatenation, an add) of the ATen formulation. See launch.h.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/element.cuh"
#include "kernels/cuda/launch.h"

namespace posttrain::kernels::cuda {
namespace {

template <typename T, typename C>
__global__ void rope_kernel(const T* __restrict__ x, const C* __restrict__ cos,
                            const C* __restrict__ sin, int64_t rows, int64_t heads, int64_t dim,
                            bool backward, T* __restrict__ out) {
  const int64_t half = dim / 2;
  const int64_t total = rows * heads * half;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, rh = idx / half, row = rh / heads;
    const int64_t xo = rh * dim, co = row * dim;
    const float x1 = ld(x, xo + i), x2 = ld(x, xo + i + half);
    const float c1 = ld(cos, co + i), c2 = ld(cos, co + i + half);
    const float s1 = ld(sin, co + i), s2 = ld(sin, co + i + half);
    if (!backward) {
      // out1 = x1 c1 - x2 s1, out2 = x2 c2 + x1 s2.
      st(out, xo + i, x1 * c1 - x2 * s1);
      st(out, xo + i + half, x2 * c2 + x1 * s2);
    } else {
      // x holds d(out): d(x1) = g1 c1 + g2 s2, d(x2) = g2 c2 - g1 s1.
      st(out, xo + i, x1 * c1 + x2 * s2);
      st(out, xo + i + half, x2 * c2 - x1 * s1);
    }
  }
}

template <typename T>
void launch(const void* x, const void* cos, const void* sin, DType cos_dtype, int64_t rows,
            int64_t heads, int64_t dim, bool backward, void* out, cudaStream_t s) {
  const int64_t total = rows * heads * (dim / 2);
  const int threads = 256;
  const int64_t blocks64 = (total + threads - 1) / threads;
  const int blocks = static_cast<int>(blocks64 < 65536 * 16 ? blocks64 : 65536 * 16);
  if (cos_dtype == DType::kFloat32) {
    rope_kernel<<<blocks, threads, 0, s>>>(static_cast<const T*>(x), static_cast<const float*>(cos),
                                           static_cast<const float*>(sin), rows, heads, dim,
                                           backward, static_cast<T*>(out));
  } else {
    rope_kernel<<<blocks, threads, 0, s>>>(
        static_cast<const T*>(x), static_cast<const __nv_bfloat16*>(cos),
        static_cast<const __nv_bfloat16*>(sin), rows, heads, dim, backward, static_cast<T*>(out));
  }
}

}  // namespace

void rope(const void* x, DType dtype, const void* cos, const void* sin, DType cos_dtype,
          int64_t rows, int64_t heads, int64_t dim, bool backward, void* out, void* stream) {
  if (rows * heads * dim == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == DType::kBFloat16) {
    launch<__nv_bfloat16>(x, cos, sin, cos_dtype, rows, heads, dim, backward, out, s);
  } else {
    launch<float>(x, cos, sin, cos_dtype, rows, heads, dim, backward, out, s);
  }
}

}  // namespace posttrain::kernels::cuda
