// See rope.h. Three paths: our CUDA kernel (CUDA builds), one fused loop each way on CPU float32
// (cpu_vec.h), and the ATen formula transformers uses everywhere else.
#include "kernels/rope.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>
#include <torch/autograd.h>

#include <algorithm>

#include "kernels/cpu_vec.h"
#include "kernels/device.h"

namespace posttrain::kernels {
namespace {

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)}, -1);
}

// CPU float32: one pass each way over [B*T rows, heads, D], x read through its strides (the
// last dim contiguous), cos/sin [B*T, D] contiguous. With h = D/2, forward
//   y[j] = x[j] c[j] - x[j+h] s[j],   y[j+h] = x[j+h] c[j+h] + x[j] s[j+h]   (j < h)
// and backward, its transpose,
//   dx[j] = g[j] c[j] + g[j+h] s[j+h],   dx[j+h] = g[j+h] c[j+h] - g[j] s[j].
inline void rope_head_forward(const float* __restrict x, const float* __restrict c,
                              const float* __restrict s, float* __restrict y, int64_t half) {
  for (int64_t j = 0; j < half; ++j) {
    y[j] = x[j] * c[j] - x[j + half] * s[j];
    y[j + half] = x[j + half] * c[j + half] + x[j] * s[j + half];
  }
}

inline void rope_head_backward(const float* __restrict g, const float* __restrict c,
                               const float* __restrict s, float* __restrict dx, int64_t half) {
  for (int64_t j = 0; j < half; ++j) {
    dx[j] = g[j] * c[j] + g[j + half] * s[j + half];
    dx[j + half] = g[j + half] * c[j + half] - g[j] * s[j];
  }
}

at::Tensor rope_cpu(const at::Tensor& x_in, const at::Tensor& cos, const at::Tensor& sin,
                    bool backward) {
  const auto x = x_in.stride(3) == 1 ? x_in : x_in.contiguous();  // [B, T, H, D]
  const int64_t B = x.size(0), T = x.size(1), heads = x.size(2), dim = x.size(3);
  auto out = at::empty({B, T, heads, dim}, x.options());  // contiguous
  const float* xp = x.data_ptr<float>();
  const float* cp = cos.data_ptr<float>();
  const float* sp = sin.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t sb = x.stride(0), st = x.stride(1), sh = x.stride(2);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(heads * dim, 1));
  at::parallel_for(0, B * T, grain, [&](int64_t begin, int64_t end) {
    cpu::run_isa([&] {
      for (int64_t row = begin; row < end; ++row) {
        const float* xr = xp + (row / T) * sb + (row % T) * st;
        for (int64_t hh = 0; hh < heads; ++hh) {
          if (backward) {
            rope_head_backward(xr + hh * sh, cp + row * dim, sp + row * dim,
                               op + (row * heads + hh) * dim, dim / 2);
          } else {
            rope_head_forward(xr + hh * sh, cp + row * dim, sp + row * dim,
                              op + (row * heads + hh) * dim, dim / 2);
          }
        }
      }
    });
  });
  return out;
}

#ifdef POSTTRAIN_HAS_CUDA_KERNELS
at::Tensor rope_cuda(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     bool backward) {
  // Rows read through one stride (the q/k column blocks of the stacked q/k/v GEMM are [B, T, H,
  // D] views with a row stride of the whole q/k/v width); other layouts are copied first.
  const int64_t B = x.size(0), T = x.size(1);
  const bool rows_strided = x.stride(3) == 1 && x.stride(2) == x.size(3) &&
                            (B == 1 || T == 1 || x.stride(0) == T * x.stride(1));
  const auto xc = rows_strided ? x : x.contiguous();  // [B, T, H, D]
  const int64_t rows = B * T, heads = xc.size(2), dim = xc.size(3);
  const int64_t row_stride = T > 1 ? xc.stride(1) : (B > 1 ? xc.stride(0) : heads * dim);
  auto out = at::empty({B, T, heads, dim}, xc.options());  // contiguous
  const c10::OptionalDeviceGuard device(xc.device());
  cuda::rope(xc.data_ptr(), row_stride, dtype_of(xc),
             cos.data_ptr(), sin.data_ptr(), dtype_of(cos), rows, heads, dim, backward,
             out.data_ptr(), stream_of(xc));
  check_launch();
  return out;
}
#endif

// One pass each way on the device of x: our CUDA kernel or the CPU float32 loop.
at::Tensor rope_fused(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                      bool backward) {
#ifdef POSTTRAIN_HAS_CUDA_KERNELS
  if (x.is_cuda()) return rope_cuda(x, cos, sin, backward);
#endif
  return rope_cpu(x, cos, sin, backward);
}

struct RopeFunction : torch::autograd::Function<RopeFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& cos, const at::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return rope_fused(x, cos, sin, /*backward=*/false);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    return {rope_fused(grads[0], saved[0], saved[1], /*backward=*/true), at::Tensor(),
            at::Tensor()};
  }
};

}  // namespace

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  TORCH_CHECK(x.dim() == 4 && cos.dim() == 3 && sin.sizes() == cos.sizes() &&
                  cos.size(0) == x.size(0) && cos.size(1) == x.size(1) &&
                  cos.size(2) == x.size(3) && x.size(3) % 2 == 0,
              "apply_rope: x must be [B, T, H, D] and cos/sin [B, T, D], got ", x.sizes(), " and ",
              cos.sizes());
  const bool cpu_loop = x.is_cpu() && x.scalar_type() == at::kFloat &&
                        cos.scalar_type() == at::kFloat && sin.scalar_type() == at::kFloat &&
                        x.numel() > 0;
  // CUDA: x and the tables in kernel dtypes on x's device, cos and sin of one dtype (the kernel
  // reads both as cos's); else ATen, not an error or a misread table.
  const bool cuda_kernel = use_cuda_kernels(x) && kernel_dtype(x.scalar_type()) &&
                           kernel_dtype(cos.scalar_type()) &&
                           sin.scalar_type() == cos.scalar_type() &&
                           cos.device() == x.device() && sin.device() == x.device();
  if (cuda_kernel || cpu_loop) {
    return RopeFunction::apply(x, cos.contiguous(), sin.contiguous());
  }
  return x * cos.unsqueeze(2) + rotate_half(x) * sin.unsqueeze(2);
}

}  // namespace posttrain::kernels
