// Row-wise log-softmax + gather over a [rows, vocab] logits matrix kept in its compute dtype:
// one block per row streams the row once (online max and sum of exponentials), so neither
// direction materialises a float32 copy of the logits. When the vocabulary is a multiple of 8
// and the logits 16-byte aligned, a thread reads packs of 8 through 16-byte loads (one max
// update per pack), otherwise element by element. See launch.h for the contract.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cfloat>

#include "kernels/cuda/element.cuh"
#include "kernels/cuda/launch.h"

namespace posttrain::kernels::cuda {
namespace {

// Threads per block (one block per row). The kernels carry __launch_bounds__(kThreads): without
// it the compiler may give a thread more than the 64 registers a 1024-thread block can have, and
// every launch would then fail (too many resources requested).
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
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const T* __restrict__ logits, const int64_t* __restrict__ targets,
                   int64_t vocab, bool vec, float* __restrict__ lse, float* __restrict__ lp) {
  const int64_t row = blockIdx.x;
  const T* x = logits + row * vocab;
  float m = -FLT_MAX, s = 0.f;
  const int64_t packs = vec ? vocab / kPack : 0;
  for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
    float v[kPack];
    ld8(x + p * kPack, v);
    float pm = v[0];
#pragma unroll
    for (int i = 1; i < kPack; ++i) pm = fmaxf(pm, v[i]);
    if (pm > m) {
      s *= __expf(m - pm);
      m = pm;
    }
#pragma unroll
    for (int i = 0; i < kPack; ++i) s += __expf(v[i] - m);
  }
  for (int64_t j = packs * kPack + threadIdx.x; j < vocab; j += blockDim.x) {
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
__global__ void __launch_bounds__(kThreads)
    backward_kernel(T* __restrict__ logits, const int64_t* __restrict__ targets,
                    const float* __restrict__ lse, const float* __restrict__ grad, int64_t vocab,
                    bool vec) {
  const int64_t row = blockIdx.x;
  T* x = logits + row * vocab;
  const float l = lse[row], g = grad[row];
  const int64_t t = targets[row];
  const int64_t packs = vec ? vocab / kPack : 0;
  for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) {
    float v[kPack];
    ld8(x + p * kPack, v);
#pragma unroll
    for (int i = 0; i < kPack; ++i) {
      v[i] = -g * __expf(v[i] - l);
      if (p * kPack + i == t) v[i] += g;
    }
    st8(x + p * kPack, v);
  }
  for (int64_t j = packs * kPack + threadIdx.x; j < vocab; j += blockDim.x) {
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
  const bool vec = vocab % kPack == 0 && is_aligned16(logits);  // every row aligned then
  if (dtype == DType::kBFloat16) {
    forward_kernel<<<rows, kThreads, 0, s>>>(static_cast<const __nv_bfloat16*>(logits), targets,
                                             vocab, vec, lse, lp);
  } else {
    forward_kernel<<<rows, kThreads, 0, s>>>(static_cast<const float*>(logits), targets, vocab,
                                             vec, lse, lp);
  }
}

void logprob_rows_backward_inplace(void* logits, DType dtype, const int64_t* targets,
                                   const float* lse, const float* grad, int64_t rows,
                                   int64_t vocab, void* stream) {
  if (rows == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  const bool vec = vocab % kPack == 0 && is_aligned16(logits);
  if (dtype == DType::kBFloat16) {
    backward_kernel<<<rows, kThreads, 0, s>>>(static_cast<__nv_bfloat16*>(logits), targets, lse,
                                              grad, vocab, vec);
  } else {
    backward_kernel<<<rows, kThreads, 0, s>>>(static_cast<float*>(logits), targets, lse, grad,
                                              vocab, vec);
  }
}

}  // namespace posttrain::kernels::cuda
