// Residual add + RMSNorm, one pass over the rows each way (ATen runs the add, then the norm
// reading the sum back, and under autocast a cast of the float32 output for every linear that
// reads it). Forward: one block per row; each thread keeps its packs of 8 elements of the row in
// registers between the sum of squares and the normalised write, so the row is read once.
// Backward: a fixed grid of blocks, each walking rows blockIdx.x, blockIdx.x + grid, ...; the
// weight gradient of a block's rows stays in its threads' registers (each thread owns fixed
// columns) and goes to a [grid, h] float32 workspace, which a second kernel sums over blocks in
// a fixed order: deterministic, no atomics. Rows whose width is not a multiple of 8 or above
// 8192, or pointers not 16-byte aligned, take the scalar kernels (same maths, element by
// element).
// Float32 maths on float32 or bf16 data. See launch.h for the contract.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/element.cuh"
#include "kernels/cuda/launch.h"

namespace posttrain::kernels::cuda {
namespace {

constexpr int kVecThreads = 256;  // at most; a thread keeps up to 4 packs of a row
constexpr int kScalarThreads = 256;
constexpr int kBlocksPerSm = 8;  // backward grid: this many blocks per SM (capped by rows)

// Sum of v over the block, returned to every thread; red holds one float per warp. blockDim.x
// is a multiple of 32. The order of additions is fixed by blockDim.x alone.
__device__ __forceinline__ float block_sum(float v, float* red) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float s = 0.f;
  const int warps = blockDim.x / 32;
  for (int w = 0; w < warps; ++w) s += red[w];
  __syncthreads();  // red may be written again by the next call
  return s;
}

// Forward, vectorised: thread t owns packs t, t + blockDim.x, ... (at most kPacks) of the row.
template <typename TR, typename TB, typename TO, int kPacks>
__global__ void __launch_bounds__(kVecThreads)
    forward_vec(const TR* __restrict__ res, const TB* __restrict__ br,
                const float* __restrict__ w, int64_t h, float eps, TR* __restrict__ sum_out,
                TO* __restrict__ out, float* __restrict__ rstd) {
  __shared__ float red[kVecThreads / 32];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * h;
  const int64_t packs = h / kPack;
  float x[kPacks][kPack];
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int64_t p = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (p < packs) {
      const int64_t o = base + p * kPack;
      ld8(res + o, x[k]);
      if (br != nullptr) {
        float b[kPack];
        ld8(br + o, b);
#pragma unroll
        for (int i = 0; i < kPack; ++i) x[k][i] = round_as(res, x[k][i] + b[i]);
        st8(sum_out + o, x[k]);
      }
#pragma unroll
      for (int i = 0; i < kPack; ++i) ss += x[k][i] * x[k][i];
    }
  }
  const float r = 1.f / sqrtf(block_sum(ss, red) / static_cast<float>(h) + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int64_t p = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (p < packs) {
      float wv[kPack], y[kPack];
      ld8(w + p * kPack, wv);
#pragma unroll
      for (int i = 0; i < kPack; ++i) y[i] = wv[i] * round_as(res, x[k][i] * r);
      st8(out + base + p * kPack, y);
    }
  }
}

// Forward, element by element (any width, any alignment); the second pass recomputes the sum.
template <typename TR, typename TB, typename TO>
__global__ void __launch_bounds__(kScalarThreads)
    forward_scalar(const TR* __restrict__ res, const TB* __restrict__ br,
                   const float* __restrict__ w, int64_t h, float eps, TR* __restrict__ sum_out,
                   TO* __restrict__ out, float* __restrict__ rstd) {
  __shared__ float red[kScalarThreads / 32];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * h;
  float ss = 0.f;
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x) {
    float v = ld(res, base + j);
    if (br != nullptr) {
      v = round_as(res, v + ld(br, base + j));
      st(sum_out, base + j, v);
    }
    ss += v * v;
  }
  const float r = 1.f / sqrtf(block_sum(ss, red) / static_cast<float>(h) + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x) {
    float v = ld(res, base + j);
    if (br != nullptr) v = round_as(res, v + ld(br, base + j));
    st(out, base + j, w[j] * round_as(res, v * r));
  }
}

// Backward, vectorised. Per row: gw = g * w, dot = sum(gw * x) over the row, then
// d = r * gw - x * (r^3 dot / h) (+ grad_sum); acc (this thread's columns) += g * (x * r).
template <typename TR, typename TB, typename TO, int kPacks>
__global__ void __launch_bounds__(kVecThreads)
    backward_vec(const TO* __restrict__ g, const TR* __restrict__ gs, const TR* __restrict__ x,
                 const float* __restrict__ w, const float* __restrict__ rstd, int64_t rows,
                 int64_t h, TR* __restrict__ dres, TB* __restrict__ dbr,
                 float* __restrict__ partial) {
  __shared__ float red[kVecThreads / 32];
  const int64_t packs = h / kPack;
  float wv[kPacks][kPack], acc[kPacks][kPack];
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int64_t p = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
#pragma unroll
    for (int i = 0; i < kPack; ++i) acc[k][i] = 0.f;
    if (p < packs) ld8(w + p * kPack, wv[k]);
  }
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * h;
    const float r = rstd[row];
    float xv[kPacks][kPack], gw[kPacks][kPack];
    float dot = 0.f;
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      const int64_t p = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      if (p < packs) {
        float gv[kPack];
        ld8(x + base + p * kPack, xv[k]);
        ld8(g + base + p * kPack, gv);
#pragma unroll
        for (int i = 0; i < kPack; ++i) {
          gw[k][i] = gv[i] * wv[k][i];
          dot += gw[k][i] * xv[k][i];
          acc[k][i] += gv[i] * round_as(x, xv[k][i] * r);
        }
      }
    }
    const float c = r * r * r * (block_sum(dot, red) / static_cast<float>(h));
#pragma unroll
    for (int k = 0; k < kPacks; ++k) {
      const int64_t p = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
      if (p < packs) {
        const int64_t o = base + p * kPack;
        float d[kPack];
#pragma unroll
        for (int i = 0; i < kPack; ++i) d[i] = r * gw[k][i] - xv[k][i] * c;
        if (gs != nullptr) {
          float s[kPack];
          ld8(gs + o, s);
#pragma unroll
          for (int i = 0; i < kPack; ++i) d[i] += s[i];
        }
        st8(dres + o, d);
        if (dbr != nullptr) st8(dbr + o, d);
      }
    }
  }
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int64_t p = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (p < packs) st8(partial + static_cast<int64_t>(blockIdx.x) * h + p * kPack, acc[k]);
  }
}

// Backward, element by element; each thread accumulates its columns of the weight gradient in
// its block's workspace row (no other thread touches them).
template <typename TR, typename TB, typename TO>
__global__ void __launch_bounds__(kScalarThreads)
    backward_scalar(const TO* __restrict__ g, const TR* __restrict__ gs,
                    const TR* __restrict__ x, const float* __restrict__ w,
                    const float* __restrict__ rstd, int64_t rows, int64_t h,
                    TR* __restrict__ dres, TB* __restrict__ dbr, float* __restrict__ partial) {
  __shared__ float red[kScalarThreads / 32];
  float* acc = partial + static_cast<int64_t>(blockIdx.x) * h;
  for (int64_t j = threadIdx.x; j < h; j += blockDim.x) acc[j] = 0.f;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * h;
    const float r = rstd[row];
    float dot = 0.f;
    for (int64_t j = threadIdx.x; j < h; j += blockDim.x) {
      const float xv = ld(x, base + j), gv = ld(g, base + j);
      dot += (gv * w[j]) * xv;
      acc[j] += gv * round_as(x, xv * r);
    }
    const float c = r * r * r * (block_sum(dot, red) / static_cast<float>(h));
    for (int64_t j = threadIdx.x; j < h; j += blockDim.x) {
      float d = r * (ld(g, base + j) * w[j]) - ld(x, base + j) * c;
      if (gs != nullptr) d += ld(gs, base + j);
      st(dres, base + j, d);
      if (dbr != nullptr) st(dbr, base + j, d);
    }
  }
}

// dw[j] = sum over b < parts of partial[b, j]: a block of 32 x kChains threads covers 32
// columns; chain y sums rows y, y + kChains, ... in order, then thread y = 0 adds the chains
// in order.
constexpr int kChains = 16;
__global__ void __launch_bounds__(32 * kChains)
    reduce_partials(const float* __restrict__ partial, int64_t parts, int64_t h,
                    float* __restrict__ dw) {
  __shared__ float chain[kChains][32];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  float s = 0.f;
  if (j < h) {
    for (int64_t b = threadIdx.y; b < parts; b += kChains) s += partial[b * h + j];
  }
  chain[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < h) {
    float t = 0.f;
    for (int y = 0; y < kChains; ++y) t += chain[y][threadIdx.x];
    dw[j] = t;
  }
}

// Launch shape for a row width: vectorised with kPacks packs per thread, or scalar.
struct Shape {
  bool vec;
  int packs_per_thread;  // 1, 2 or 4 when vec
  int threads;
};

int round_up32(int64_t n) { return static_cast<int>((n + 31) / 32 * 32); }

Shape shape_for(int64_t h, bool aligned) {
  if (aligned && h % kPack == 0) {
    const int64_t packs = h / kPack;
    for (int p : {1, 2, 4}) {
      const int64_t t = (packs + p - 1) / p;
      if (t <= kVecThreads) return {true, p, round_up32(t)};
    }
  }
  return {false, 0, h < kScalarThreads ? round_up32(h) : kScalarThreads};
}

template <typename T>
struct Tag {
  using type = T;
};

// Calls f(Tag<T>{}) with T the C++ type of d.
template <typename F>
void with_type(DType d, F&& f) {
  if (d == DType::kBFloat16) {
    f(Tag<__nv_bfloat16>{});
  } else {
    f(Tag<float>{});
  }
}

// Calls f(Packs<P>{}) with P = p (1, 2 or 4), the packs-per-thread template argument.
template <int P>
struct Packs {
  static constexpr int value = P;
};
template <typename F>
void with_packs(int p, F&& f) {
  if (p == 1) {
    f(Packs<1>{});
  } else if (p == 2) {
    f(Packs<2>{});
  } else {
    f(Packs<4>{});
  }
}

}  // namespace

void add_rms_norm_forward(const void* residual, DType residual_dtype, const void* branch,
                          DType branch_dtype, const float* weight, int64_t rows, int64_t h,
                          float eps, void* sum_out, void* out, DType out_dtype, float* rstd,
                          void* stream) {
  if (rows == 0 || h == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  // Without a branch its type is irrelevant: take the residual's (fewer instantiations).
  if (branch == nullptr) branch_dtype = residual_dtype;
  const bool aligned = is_aligned16(residual) && is_aligned16(branch) && is_aligned16(weight) &&
                       is_aligned16(sum_out) && is_aligned16(out);
  const Shape shape = shape_for(h, aligned);
  const auto grid = static_cast<unsigned>(rows);
  with_type(residual_dtype, [&](auto tr) {
    using TR = typename decltype(tr)::type;
    with_type(branch_dtype, [&](auto tb) {
      using TB = typename decltype(tb)::type;
      with_type(out_dtype, [&](auto to) {
        using TO = typename decltype(to)::type;
        const auto* r = static_cast<const TR*>(residual);
        const auto* b = static_cast<const TB*>(branch);
        auto* so = static_cast<TR*>(sum_out);
        auto* o = static_cast<TO*>(out);
        if (!shape.vec) {
          forward_scalar<TR, TB, TO>
              <<<grid, shape.threads, 0, s>>>(r, b, weight, h, eps, so, o, rstd);
          return;
        }
        with_packs(shape.packs_per_thread, [&](auto p) {
          forward_vec<TR, TB, TO, decltype(p)::value>
              <<<grid, shape.threads, 0, s>>>(r, b, weight, h, eps, so, o, rstd);
        });
      });
    });
  });
}

int64_t add_rms_norm_partials(int64_t rows) {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
      sms <= 0) {
    sms = 1;
  }
  const int64_t blocks = static_cast<int64_t>(sms) * kBlocksPerSm;
  return rows < blocks ? (rows > 0 ? rows : 1) : blocks;
}

void add_rms_norm_backward(const void* grad_out, DType out_dtype, const void* grad_sum,
                           const void* x, DType residual_dtype, const float* weight,
                           const float* rstd, int64_t rows, int64_t h, void* grad_residual,
                           void* grad_branch, DType branch_dtype, float* workspace,
                           float* grad_weight, void* stream) {
  if (h == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  const int64_t parts = add_rms_norm_partials(rows);
  if (rows > 0) {
    if (grad_branch == nullptr) branch_dtype = residual_dtype;
    const bool aligned = is_aligned16(grad_out) && is_aligned16(grad_sum) && is_aligned16(x) &&
                         is_aligned16(weight) && is_aligned16(grad_residual) &&
                         is_aligned16(grad_branch) && is_aligned16(workspace);
    const Shape shape = shape_for(h, aligned);
    const auto grid = static_cast<unsigned>(parts);
    with_type(residual_dtype, [&](auto tr) {
      using TR = typename decltype(tr)::type;
      with_type(branch_dtype, [&](auto tb) {
        using TB = typename decltype(tb)::type;
        with_type(out_dtype, [&](auto to) {
          using TO = typename decltype(to)::type;
          const auto* g = static_cast<const TO*>(grad_out);
          const auto* gs = static_cast<const TR*>(grad_sum);
          const auto* xv = static_cast<const TR*>(x);
          auto* dr = static_cast<TR*>(grad_residual);
          auto* db = static_cast<TB*>(grad_branch);
          if (!shape.vec) {
            backward_scalar<TR, TB, TO><<<grid, shape.threads, 0, s>>>(
                g, gs, xv, weight, rstd, rows, h, dr, db, workspace);
            return;
          }
          with_packs(shape.packs_per_thread, [&](auto p) {
            backward_vec<TR, TB, TO, decltype(p)::value><<<grid, shape.threads, 0, s>>>(
                g, gs, xv, weight, rstd, rows, h, dr, db, workspace);
          });
        });
      });
    });
  } else {
    cudaMemsetAsync(workspace, 0, sizeof(float) * static_cast<size_t>(h), s);
  }
  const dim3 block(32, kChains);
  const auto blocks = static_cast<unsigned>((h + 31) / 32);
  reduce_partials<<<blocks, block, 0, s>>>(workspace, parts, h, grad_weight);
}

}  // namespace posttrain::kernels::cuda
