// SwiGLU's elementwise part, out = silu(gate) * up, in one pass each way (ATen runs silu, then
// a multiply, and three kernels in backward, keeping silu(gate) alive in between). Float32
// maths. Grid-stride loops sized to the device; packs of 8 elements through 16-byte loads and
// stores when every pointer is 16-byte aligned, then the tail (or everything, when not aligned)
// element by element. See launch.h.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/element.cuh"
#include "kernels/cuda/launch.h"

namespace posttrain::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float swiglu_value(float g, float u) {
  return g / (1.f + __expf(-g)) * u;
}

// d(out) = d -> (d(gate), d(up)).
__device__ __forceinline__ void swiglu_grad(float d, float g, float u, float& dg, float& du) {
  const float sig = 1.f / (1.f + __expf(-g));
  const float silu = g * sig;
  dg = d * u * sig * (1.f + g * (1.f - sig));
  du = d * silu;
}

// packs: how many leading packs of 8 go through vector accesses (0 when not aligned).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const T* __restrict__ gate, const T* __restrict__ up, int64_t n,
                   int64_t packs, T* __restrict__ out) {
  const int64_t start = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = start; p < packs; p += stride) {
    float g[kPack], u[kPack], o[kPack];
    ld8(gate + p * kPack, g);
    ld8(up + p * kPack, u);
#pragma unroll
    for (int i = 0; i < kPack; ++i) o[i] = swiglu_value(g[i], u[i]);
    st8(out + p * kPack, o);
  }
  for (int64_t i = packs * kPack + start; i < n; i += stride) {
    st(out, i, swiglu_value(ld(gate, i), ld(up, i)));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const T* __restrict__ grad, const T* __restrict__ gate,
                    const T* __restrict__ up, int64_t n, int64_t packs,
                    T* __restrict__ grad_gate, T* __restrict__ grad_up) {
  const int64_t start = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = start; p < packs; p += stride) {
    float d[kPack], g[kPack], u[kPack], dg[kPack], du[kPack];
    ld8(grad + p * kPack, d);
    ld8(gate + p * kPack, g);
    ld8(up + p * kPack, u);
#pragma unroll
    for (int i = 0; i < kPack; ++i) swiglu_grad(d[i], g[i], u[i], dg[i], du[i]);
    st8(grad_gate + p * kPack, dg);
    st8(grad_up + p * kPack, du);
  }
  for (int64_t i = packs * kPack + start; i < n; i += stride) {
    float dg, du;
    swiglu_grad(ld(grad, i), ld(gate, i), ld(up, i), dg, du);
    st(grad_gate, i, dg);
    st(grad_up, i, du);
  }
}

// Leading packs of 8 when every pointer is 16-byte aligned, else none; and the grid.
int64_t packs_for(int64_t n, std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs) {
    if (!is_aligned16(p)) return 0;
  }
  return n / kPack;
}

unsigned grid(int64_t n, int64_t packs) {
  // Work items: packs, or single elements for the tail (at most 7) / everything unaligned.
  const int64_t tail = n - packs * kPack;
  return grid_for(packs > tail ? packs : tail, kThreads);
}

}  // namespace

void swiglu_forward(const void* gate, const void* up, DType dtype, int64_t n, void* out,
                    void* stream) {
  if (n == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  const int64_t packs = packs_for(n, {gate, up, out});
  if (dtype == DType::kBFloat16) {
    forward_kernel<<<grid(n, packs), kThreads, 0, s>>>(
        static_cast<const __nv_bfloat16*>(gate), static_cast<const __nv_bfloat16*>(up), n, packs,
        static_cast<__nv_bfloat16*>(out));
  } else {
    forward_kernel<<<grid(n, packs), kThreads, 0, s>>>(static_cast<const float*>(gate),
                                                       static_cast<const float*>(up), n, packs,
                                                       static_cast<float*>(out));
  }
}

void swiglu_backward(const void* grad, const void* gate, const void* up, DType dtype, int64_t n,
                     void* grad_gate, void* grad_up, void* stream) {
  if (n == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  const int64_t packs = packs_for(n, {grad, gate, up, grad_gate, grad_up});
  if (dtype == DType::kBFloat16) {
    backward_kernel<<<grid(n, packs), kThreads, 0, s>>>(
        static_cast<const __nv_bfloat16*>(grad), static_cast<const __nv_bfloat16*>(gate),
        static_cast<const __nv_bfloat16*>(up), n, packs, static_cast<__nv_bfloat16*>(grad_gate),
        static_cast<__nv_bfloat16*>(grad_up));
  } else {
    backward_kernel<<<grid(n, packs), kThreads, 0, s>>>(
        static_cast<const float*>(grad), static_cast<const float*>(gate),
        static_cast<const float*>(up), n, packs, static_cast<float*>(grad_gate),
        static_cast<float*>(grad_up));
  }
}

}  // namespace posttrain::kernels::cuda
