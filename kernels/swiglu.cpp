// See swiglu.h.
#include "kernels/swiglu.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "kernels/device.h"

namespace posttrain::kernels {
namespace {

#ifdef POSTTRAIN_HAS_CUDA_KERNELS
struct SwigluFunction : torch::autograd::Function<SwigluFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& gate,
                            const at::Tensor& up) {
    const auto g = gate.contiguous(), u = up.contiguous();
    ctx->save_for_backward({g, u});
    auto out = at::empty_like(g);
    cuda::swiglu_forward(g.data_ptr(), u.data_ptr(), dtype_of(g), g.numel(), out.data_ptr(),
                         stream_of(g));
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& g = saved[0];
    const auto& u = saved[1];
    const auto d = grads[0].to(g.scalar_type()).contiguous();
    auto dg = at::empty_like(g), du = at::empty_like(u);
    cuda::swiglu_backward(d.data_ptr(), g.data_ptr(), u.data_ptr(), dtype_of(g), g.numel(),
                          dg.data_ptr(), du.data_ptr(), stream_of(g));
    return {dg, du};
  }
};
#endif

}  // namespace

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) {
  TORCH_CHECK(gate.sizes() == up.sizes(), "swiglu: gate ", gate.sizes(), " and up ", up.sizes(),
              " differ");
#ifdef POSTTRAIN_HAS_CUDA_KERNELS
  if (use_cuda_kernels(gate) && gate.scalar_type() == up.scalar_type()) {
    return SwigluFunction::apply(gate, up);
  }
#endif
  return at::silu(gate) * up;
}

}  // namespace posttrain::kernels
