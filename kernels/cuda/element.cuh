// Loads and stores of float32 / bf16 elements as float32, shared by our kernels (device code
// only; no ATen): one element at a time (ld, st), or a pack of 8 consecutive elements through
// 16-byte vector accesses (ld8, st8: one for bf16, two for float32), which need the address
// 16-byte aligned (is_aligned16 on the host side, before picking a vectorised kernel).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace posttrain::kernels::cuda {

constexpr int kPack = 8;  // elements per vector access

__device__ __forceinline__ float ld(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}
__device__ __forceinline__ void st(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st(__nv_bfloat16* p, int64_t i, float v) {
  p[i] = __float2bfloat16(v);
}

// v rounded to T's precision and back (the value a store and reload of T would give).
__device__ __forceinline__ float round_as(const float*, float v) { return v; }
__device__ __forceinline__ float round_as(const __nv_bfloat16*, float v) {
  return __bfloat162float(__float2bfloat16(v));
}

// v[0..8) <- p[0..8) as float32; p 16-byte aligned.
__device__ __forceinline__ void ld8(const float* p, float (&v)[kPack]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0];
  const float4 b = reinterpret_cast<const float4*>(p)[1];
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
  v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ __forceinline__ void ld8(const __nv_bfloat16* p, float (&v)[kPack]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    __nv_bfloat162 pair;
    pair.x = __ushort_as_bfloat16(static_cast<unsigned short>(w[k] & 0xffffu));
    pair.y = __ushort_as_bfloat16(static_cast<unsigned short>(w[k] >> 16));
    const float2 f = __bfloat1622float2(pair);
    v[2 * k] = f.x;
    v[2 * k + 1] = f.y;
  }
}

// p[0..8) <- v[0..8) (rounded to nearest even for bf16); p 16-byte aligned.
__device__ __forceinline__ void st8(float* p, const float (&v)[kPack]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ void st8(__nv_bfloat16* p, const float (&v)[kPack]) {
  uint32_t w[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const uint32_t lo = __bfloat16_as_ushort(__float2bfloat16(v[2 * k]));
    const uint32_t hi = __bfloat16_as_ushort(__float2bfloat16(v[2 * k + 1]));
    w[k] = lo | (hi << 16);
  }
  *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}

// Host side: whether p (null counts as aligned) suits ld8 / st8.
inline bool is_aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Host side: blocks of `threads` for a grid-stride loop over `work` items: one item per thread
// when that is fewer than the device holds at once (8 blocks of 256 threads per SM), else that
// many blocks looping.
inline unsigned grid_for(int64_t work, int threads) {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      sms <= 0) {
    sms = 1;
  }
  const int64_t full = static_cast<int64_t>(sms) * (2048 / threads);
  const int64_t need = (work + threads - 1) / threads;
  return static_cast<unsigned>(need < full ? (need > 0 ? need : 1) : full);
}

}  // namespace posttrain::kernels::cuda
