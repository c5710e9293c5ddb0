// Rotary embedding in one pass over q or k laid out [B*T, heads, dim] (the projection's own
// layout, before the transpose for attention; x's rows may be strided, as the column blocks of
// the one q/k/v GEMM are, and the output is contiguous): each thread rotates one (i, i + dim/2)
// pair in float32 and writes both outputs, instead of the five elementwise kernels (two
// multiplies, a negation, a concatenation, an add) of the ATen formulation. When dim / 2 is a
// multiple of 8, the row stride a multiple of 8 and every pointer 16-byte aligned, a thread
// rotates 8 consecutive pairs through 16-byte loads and stores (the same maths per pair).
// Grid-stride loops sized to the device. See launch.h.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/element.cuh"
#include "kernels/cuda/launch.h"

namespace posttrain::kernels::cuda {
namespace {

// The rotation of one pair: forward out1 = x1 c1 - x2 s1, out2 = x2 c2 + x1 s2; backward (x
// holds d(out)) d(x1) = g1 c1 + g2 s2, d(x2) = g2 c2 - g1 s1.
__device__ __forceinline__ void rotate(float x1, float x2, float c1, float c2, float s1,
                                       float s2, bool backward, float& o1, float& o2) {
  if (!backward) {
    o1 = x1 * c1 - x2 * s1;
    o2 = x2 * c2 + x1 * s2;
  } else {
    o1 = x1 * c1 + x2 * s2;
    o2 = x2 * c2 - x1 * s1;
  }
}

// Vectorised: work item = 8 consecutive pairs (i .. i+7, i + half .. i + half + 7) of one head.
template <typename T, typename C>
__global__ void __launch_bounds__(256)
    rope_vec_kernel(const T* __restrict__ x, const C* __restrict__ cos,
                    const C* __restrict__ sin, int64_t rows, int64_t heads, int64_t dim,
                    int64_t xs, bool backward, T* __restrict__ out) {
  const int64_t half = dim / 2, hp = half / kPack;
  const int64_t total = rows * heads * hp;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = (idx % hp) * kPack, rh = idx / hp, row = rh / heads;
    const int64_t xo = row * xs + (rh % heads) * dim + i, oo = rh * dim + i, co = row * dim + i;
    float x1[kPack], x2[kPack], c1[kPack], c2[kPack], s1[kPack], s2[kPack], o1[kPack], o2[kPack];
    ld8(x + xo, x1);
    ld8(x + xo + half, x2);
    ld8(cos + co, c1);
    ld8(cos + co + half, c2);
    ld8(sin + co, s1);
    ld8(sin + co + half, s2);
#pragma unroll
    for (int k = 0; k < kPack; ++k) {
      rotate(x1[k], x2[k], c1[k], c2[k], s1[k], s2[k], backward, o1[k], o2[k]);
    }
    st8(out + oo, o1);
    st8(out + oo + half, o2);
  }
}

// One pair per work item (any dim, any alignment).
template <typename T, typename C>
__global__ void __launch_bounds__(256)
    rope_kernel(const T* __restrict__ x, const C* __restrict__ cos, const C* __restrict__ sin,
                int64_t rows, int64_t heads, int64_t dim, int64_t xs, bool backward,
                T* __restrict__ out) {
  const int64_t half = dim / 2;
  const int64_t total = rows * heads * half;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, rh = idx / half, row = rh / heads;
    const int64_t xo = row * xs + (rh % heads) * dim, oo = rh * dim, co = row * dim;
    const float x1 = ld(x, xo + i), x2 = ld(x, xo + i + half);
    const float c1 = ld(cos, co + i), c2 = ld(cos, co + i + half);
    const float s1 = ld(sin, co + i), s2 = ld(sin, co + i + half);
    float o1, o2;
    rotate(x1, x2, c1, c2, s1, s2, backward, o1, o2);
    st(out, oo + i, o1);
    st(out, oo + i + half, o2);
  }
}

template <typename T>
void launch(const void* x, int64_t xs, const void* cos, const void* sin, DType cos_dtype,
            int64_t rows, int64_t heads, int64_t dim, bool backward, void* out, cudaStream_t s) {
  const int threads = 256;
  const bool vec = (dim / 2) % kPack == 0 && xs % kPack == 0 && is_aligned16(x) &&
                   is_aligned16(cos) &&
                   is_aligned16(sin) && is_aligned16(out);
  if (vec) {
    const unsigned blocks = grid_for(rows * heads * (dim / 2 / kPack), threads);
    if (cos_dtype == DType::kFloat32) {
      rope_vec_kernel<<<blocks, threads, 0, s>>>(
          static_cast<const T*>(x), static_cast<const float*>(cos),
          static_cast<const float*>(sin), rows, heads, dim, xs, backward, static_cast<T*>(out));
    } else {
      rope_vec_kernel<<<blocks, threads, 0, s>>>(
          static_cast<const T*>(x), static_cast<const __nv_bfloat16*>(cos),
          static_cast<const __nv_bfloat16*>(sin), rows, heads, dim, xs, backward,
          static_cast<T*>(out));
    }
    return;
  }
  const unsigned blocks = grid_for(rows * heads * (dim / 2), threads);
  if (cos_dtype == DType::kFloat32) {
    rope_kernel<<<blocks, threads, 0, s>>>(static_cast<const T*>(x), static_cast<const float*>(cos),
                                           static_cast<const float*>(sin), rows, heads, dim,
                                           xs, backward, static_cast<T*>(out));
  } else {
    rope_kernel<<<blocks, threads, 0, s>>>(
        static_cast<const T*>(x), static_cast<const __nv_bfloat16*>(cos),
        static_cast<const __nv_bfloat16*>(sin), rows, heads, dim, xs, backward,
        static_cast<T*>(out));
  }
}

}  // namespace

void rope(const void* x, int64_t x_row_stride, DType dtype, const void* cos, const void* sin,
          DType cos_dtype, int64_t rows, int64_t heads, int64_t dim, bool backward, void* out,
          void* stream) {
  if (rows * heads * dim == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == DType::kBFloat16) {
    launch<__nv_bfloat16>(x, x_row_stride, cos, sin, cos_dtype, rows, heads, dim, backward, out,
                          s);
  } else {
    launch<float>(x, x_row_stride, cos, sin, cos_dtype, rows, heads, dim, backward, out, s);
  }
}

}  // namespace posttrain::kernels::cuda
