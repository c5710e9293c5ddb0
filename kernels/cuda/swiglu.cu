// SwiGLU's elementwise part, out = silu(gate) * up, in one pass each way (ATen runs silu, then
// a multiply, and three kernels in backward, keeping silu(gate) alive in between). Float32
// maths. See launch.h.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/element.cuh"
#include "kernels/cuda/launch.h"

namespace posttrain::kernels::cuda {
namespace {

template <typename T>
__global__ void forward_kernel(const T* __restrict__ gate, const T* __restrict__ up, int64_t n,
                               T* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = ld(gate, i);
    st(out, i, g / (1.f + __expf(-g)) * ld(up, i));
  }
}

template <typename T>
__global__ void backward_kernel(const T* __restrict__ grad, const T* __restrict__ gate,
                                const T* __restrict__ up, int64_t n, T* __restrict__ grad_gate,
                                T* __restrict__ grad_up) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = ld(gate, i), u = ld(up, i), d = ld(grad, i);
    const float sig = 1.f / (1.f + __expf(-g));
    const float silu = g * sig;
    st(grad_gate, i, d * u * sig * (1.f + g * (1.f - sig)));
    st(grad_up, i, d * silu);
  }
}

int blocks_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<int>(b < 65536 * 16 ? b : 65536 * 16);
}

}  // namespace

void swiglu_forward(const void* gate, const void* up, DType dtype, int64_t n, void* out,
                    void* stream) {
  if (n == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  const int threads = 256;
  if (dtype == DType::kBFloat16) {
    forward_kernel<<<blocks_for(n, threads), threads, 0, s>>>(
        static_cast<const __nv_bfloat16*>(gate), static_cast<const __nv_bfloat16*>(up), n,
        static_cast<__nv_bfloat16*>(out));
  } else {
    forward_kernel<<<blocks_for(n, threads), threads, 0, s>>>(
        static_cast<const float*>(gate), static_cast<const float*>(up), n,
        static_cast<float*>(out));
  }
}

void swiglu_backward(const void* grad, const void* gate, const void* up, DType dtype, int64_t n,
                     void* grad_gate, void* grad_up, void* stream) {
  if (n == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  const int threads = 256;
  if (dtype == DType::kBFloat16) {
    backward_kernel<<<blocks_for(n, threads), threads, 0, s>>>(
        static_cast<const __nv_bfloat16*>(grad), static_cast<const __nv_bfloat16*>(gate),
        static_cast<const __nv_bfloat16*>(up), n, static_cast<__nv_bfloat16*>(grad_gate),
        static_cast<__nv_bfloat16*>(grad_up));
  } else {
    backward_kernel<<<blocks_for(n, threads), threads, 0, s>>>(
        static_cast<const float*>(grad), static_cast<const float*>(gate),
        static_cast<const float*>(up), n, static_cast<float*>(grad_gate),
        static_cast<float*>(grad_up));
  }
}

}  // namespace posttrain::kernels::cuda
