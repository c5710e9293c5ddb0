// See rope.h.
#include "kernels/rope.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "kernels/device.h"

namespace posttrain::kernels {
namespace {

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)}, -1);
}

#ifdef POSTTRAIN_HAS_CUDA_KERNELS
at::Tensor run(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool backward) {
  const auto xc = x.contiguous();  // [B, T, H, D]
  auto out = at::empty_like(xc);
  const int64_t rows = xc.size(0) * xc.size(1), heads = xc.size(2), dim = xc.size(3);
  cuda::rope(xc.data_ptr(), dtype_of(xc), cos.data_ptr(), sin.data_ptr(), dtype_of(cos), rows,
             heads, dim, backward, out.data_ptr(), stream_of(xc));
  return out;
}

struct RopeFunction : torch::autograd::Function<RopeFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& cos, const at::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return run(x, cos, sin, /*backward=*/false);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    return {run(grads[0], saved[0], saved[1], /*backward=*/true), at::Tensor(), at::Tensor()};
  }
};
#endif

}  // namespace

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  TORCH_CHECK(x.dim() == 4 && cos.dim() == 3 && sin.sizes() == cos.sizes() &&
                  cos.size(0) == x.size(0) && cos.size(1) == x.size(1) &&
                  cos.size(2) == x.size(3) && x.size(3) % 2 == 0,
              "apply_rope: x must be [B, T, H, D] and cos/sin [B, T, D], got ", x.sizes(), " and ",
              cos.sizes());
#ifdef POSTTRAIN_HAS_CUDA_KERNELS
  if (use_cuda_kernels(x)) {
    return RopeFunction::apply(x, cos.contiguous(), sin.contiguous());
  }
#endif
  return x * cos.unsqueeze(2) + rotate_half(x) * sin.unsqueeze(2);
}

}  // namespace posttrain::kernels
