// Loads and stores of float32 / bf16 elements as float32, shared by our kernels (device code
// only; no ATen).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace posttrain::kernels::cuda {

__device__ __forceinline__ float ld(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}
__device__ __forceinline__ void st(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st(__nv_bfloat16* p, int64_t i, float v) {
  p[i] = __float2bfloat16(v);
}

}  // namespace posttrain::kernels::cuda
