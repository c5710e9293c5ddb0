// Row-wise log-softmax + gather over a [rows, vocab] logits matrix kept in its compute dtype:
// one block per row streams the row once (online max and sum of exponentials), so neither
// direction materialises a float32 copy of the logits. See launch.h for the contract.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cfloat>

#include "kernels/cuda/element.cuh"
#include "kernels/cuda/launch.h"

namespace posttrain::kernels::cuda {
namespace {

constexpr int kThreads = 1024;

// Merges (max, sum of exp(x - max)) pairs.
__device__ __forceinline__ void merge(float& m, float& s, float om, float os) {
  if (om == -FLT_MAX) return;
  if (m == -FLT_MAX) {
    m = om;
    s = os;
    return;
  }
  const float nm = fmaxf(m, om);
  s = s * __expf(m - nm) + os * __expf(om - nm);
  m = nm;
}

template <typename T>
__global__ void forward_kernel(const T* __restrict__ logits, const int64_t* __restrict__ targets,
                               int64_t vocab, float* __restrict__ lse, float* __restrict__ lp) {
  const int64_t row = blockIdx.x;
  const T* x = logits + row * vocab;
  float m = -FLT_MAX, s = 0.f;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float v = ld(x, j);
    if (v > m) {
      s = s * __expf(m - v) + 1.f;
      m = v;
    } else {
      s += __expf(v - m);
    }
  }
  // Warp, then block reduction of (m, s).
  for (int off = 16; off > 0; off >>= 1) {
    const float om = __shfl_down_sync(0xffffffff, m, off);
    const float os = __shfl_down_sync(0xffffffff, s, off);
    merge(m, s, om, os);
  }
  __shared__ float sm[kThreads / 32], ss[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    sm[warp] = m;
    ss[warp] = s;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x / 32;
    m = lane < warps ? sm[lane] : -FLT_MAX;
    s = lane < warps ? ss[lane] : 0.f;
    for (int off = 16; off > 0; off >>= 1) {
      const float om = __shfl_down_sync(0xffffffff, m, off);
      const float os = __shfl_down_sync(0xffffffff, s, off);
      merge(m, s, om, os);
    }
    if (lane == 0) {
      const float l = m + logf(s);
      lse[row] = l;
      lp[row] = ld(x, targets[row]) - l;
    }
  }
}

template <typename T>
__global__ void backward_kernel(T* __restrict__ logits, const int64_t* __restrict__ targets,
                                const float* __restrict__ lse, const float* __restrict__ grad,
                                int64_t vocab) {
  const int64_t row = blockIdx.x;
  T* x = logits + row * vocab;
  const float l = lse[row], g = grad[row];
  const int64_t t = targets[row];
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    float d = -g * __expf(ld(x, j) - l);
    if (j == t) d += g;
    st(x, j, d);
  }
}

}  // namespace

void logprob_rows_forward(const void* logits, DType dtype, const int64_t* targets, int64_t rows,
                          int64_t vocab, float* lse, float* lp, void* stream) {
  if (rows == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == DType::kBFloat16) {
    forward_kernel<<<rows, kThreads, 0, s>>>(static_cast<const __nv_bfloat16*>(logits), targets,
                                             vocab, lse, lp);
  } else {
    forward_kernel<<<rows, kThreads, 0, s>>>(static_cast<const float*>(logits), targets, vocab,
                                             lse, lp);
  }
}

void logprob_rows_backward_inplace(void* logits, DType dtype, const int64_t* targets,
                                   const float* lse, const float* grad, int64_t rows,
                                   int64_t vocab, void* stream) {
  if (rows == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == DType::kBFloat16) {
    backward_kernel<<<rows, kThreads, 0, s>>>(static_cast<__nv_bfloat16*>(logits), targets, lse,
                                              grad, vocab);
  } else {
    backward_kernel<<<rows, kThreads, 0, s>>>(static_cast<float*>(logits), targets, lse, grad,
                                              vocab);
  }
}

}  // namespace posttrain::kernels::cuda
