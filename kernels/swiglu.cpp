// See swiglu.h. Three paths: our CUDA kernel (CUDA builds), one fused loop each way on CPU
// float32 (cpu_vec.h), and ATen's silu and multiply everywhere else.
#include "kernels/swiglu.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>
#include <torch/autograd.h>

#include "kernels/cpu_vec.h"
#include "kernels/device.h"

namespace posttrain::kernels {
namespace {


// CPU float32: one pass each way, keeping only gate and up. With s = sigmoid(g):
//   out = g s u,   d_up = d g s,   d_gate = d u s (1 + g (1 - s)).
void swiglu_cpu_forward(const at::Tensor& g, const at::Tensor& u, at::Tensor& out) {
  const float* gp = g.data_ptr<float>();
  const float* up = u.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, g.numel(), 16384, [&](int64_t begin, int64_t end) {
    cpu::run_isa([&] {
      const float* __restrict gg = gp;
      const float* __restrict uu = up;
      float* __restrict oo = op;
      for (int64_t i = begin; i < end; ++i) oo[i] = gg[i] * cpu::sigmoid(gg[i]) * uu[i];
    });
  });
}

void swiglu_cpu_backward(const at::Tensor& d, const at::Tensor& g, const at::Tensor& u,
                         at::Tensor& dg, at::Tensor& du) {
  const float* dp = d.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  const float* up = u.data_ptr<float>();
  float* dgp = dg.data_ptr<float>();
  float* dup = du.data_ptr<float>();
  at::parallel_for(0, g.numel(), 16384, [&](int64_t begin, int64_t end) {
    cpu::run_isa([&] {
      const float* __restrict dd = dp;
      const float* __restrict gg = gp;
      const float* __restrict uu = up;
      float* __restrict dgo = dgp;
      float* __restrict duo = dup;
      for (int64_t i = begin; i < end; ++i) {
        const float s = cpu::sigmoid(gg[i]);
        duo[i] = dd[i] * (gg[i] * s);
        dgo[i] = dd[i] * uu[i] * (s * (1.0f + gg[i] * (1.0f - s)));
      }
    });
  });
}

struct SwigluFunction : torch::autograd::Function<SwigluFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& gate,
                            const at::Tensor& up) {
    const auto g = gate.contiguous(), u = up.contiguous();
    ctx->save_for_backward({g, u});
    auto out = at::empty_like(g);
#ifdef POSTTRAIN_HAS_CUDA_KERNELS
    if (g.is_cuda()) {
      const c10::OptionalDeviceGuard device(g.device());
      cuda::swiglu_forward(g.data_ptr(), u.data_ptr(), dtype_of(g), g.numel(), out.data_ptr(),
                           stream_of(g));
      check_launch();
      return out;
    }
#endif
    swiglu_cpu_forward(g, u, out);
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& g = saved[0];
    const auto& u = saved[1];
    const auto d = grads[0].to(g.scalar_type()).contiguous();
    auto dg = at::empty_like(g), du = at::empty_like(u);
#ifdef POSTTRAIN_HAS_CUDA_KERNELS
    if (g.is_cuda()) {
      const c10::OptionalDeviceGuard device(g.device());
      cuda::swiglu_backward(d.data_ptr(), g.data_ptr(), u.data_ptr(), dtype_of(g), g.numel(),
                            dg.data_ptr(), du.data_ptr(), stream_of(g));
      check_launch();
      return {dg, du};
    }
#endif
    swiglu_cpu_backward(d, g, u, dg, du);
    return {dg, du};
  }
};

}  // namespace

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) {
  TORCH_CHECK(gate.sizes() == up.sizes(), "swiglu: gate ", gate.sizes(), " and up ", up.sizes(),
              " differ");
  const bool cpu_loop = gate.is_cpu() && gate.scalar_type() == at::kFloat &&
                        up.scalar_type() == at::kFloat && gate.numel() > 0;
  // CUDA: gate and up of one kernel dtype on one device (else ATen, not an error or a read of
  // another device's memory).
  const bool cuda_kernel = use_cuda_kernels(gate) && up.device() == gate.device() &&
                           gate.scalar_type() == up.scalar_type() &&
                           kernel_dtype(gate.scalar_type());
  if (cuda_kernel || cpu_loop) {
    return SwigluFunction::apply(gate, up);
  }
  return at::silu(gate) * up;
}

}  // namespace posttrain::kernels
