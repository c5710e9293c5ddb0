// See logprob_rows.h.
#include "kernels/logprob_rows.h"

#include <cstdlib>

#include <ATen/ATen.h>

#include "kernels/device.h"

namespace posttrain::kernels {

bool cuda_kernels_enabled() {
#ifdef POSTTRAIN_HAS_CUDA_KERNELS
  return std::getenv("POSTTRAIN_NO_CUDA_KERNELS") == nullptr;
#else
  return false;
#endif
}

std::pair<at::Tensor, at::Tensor> logprob_rows_forward(const at::Tensor& logits,
                                                       const at::Tensor& targets, int64_t chunk) {
  TORCH_CHECK(logits.dim() == 2 && targets.dim() == 1 && targets.size(0) == logits.size(0),
              "logprob_rows_forward: logits [M, V] and targets [M], got ", logits.sizes(), " and ",
              targets.sizes());
  const int64_t m = logits.size(0);
  auto lse = at::empty({m}, logits.options().dtype(at::kFloat));  // [M]
  auto lp = at::empty({m}, logits.options().dtype(at::kFloat));   // [M]
#ifdef POSTTRAIN_HAS_CUDA_KERNELS
  if (use_cuda_kernels(logits)) {
    const auto x = logits.contiguous();
    const auto t = targets.to(at::kLong).contiguous();
    cuda::logprob_rows_forward(x.data_ptr(), dtype_of(x), t.data_ptr<int64_t>(), m, x.size(1),
                               lse.data_ptr<float>(), lp.data_ptr<float>(), stream_of(x));
    return {lse, lp};
  }
#endif
  for (int64_t s = 0; s < m; s += chunk) {
    const int64_t n = std::min(chunk, m - s);
    const auto x = logits.narrow(0, s, n).to(at::kFloat);  // [n, V]
    const auto l = at::logsumexp(x, {1});                  // [n]
    lse.narrow(0, s, n).copy_(l);
    lp.narrow(0, s, n).copy_(x.gather(1, targets.narrow(0, s, n).unsqueeze(1)).squeeze(1) - l);
  }
  return {lse, lp};
}

void logprob_rows_backward_(at::Tensor& logits, const at::Tensor& targets, const at::Tensor& lse,
                            const at::Tensor& grad, int64_t chunk) {
  const int64_t m = logits.size(0);
  const auto g = grad.to(at::kFloat).contiguous();  // [M]
#ifdef POSTTRAIN_HAS_CUDA_KERNELS
  if (use_cuda_kernels(logits) && logits.is_contiguous()) {
    const auto t = targets.to(at::kLong).contiguous();
    cuda::logprob_rows_backward_inplace(logits.data_ptr(), dtype_of(logits), t.data_ptr<int64_t>(),
                                        lse.data_ptr<float>(), g.data_ptr<float>(), m,
                                        logits.size(1), stream_of(logits));
    return;
  }
#endif
  // d/dlogits of g * (x[t] - lse) = g * (onehot(t) - softmax(x)).
  for (int64_t s = 0; s < m; s += chunk) {
    const int64_t n = std::min(chunk, m - s);
    auto part = logits.narrow(0, s, n);              // [n, V]
    const auto gs = g.narrow(0, s, n).unsqueeze(1);  // [n, 1]
    auto d = (part.to(at::kFloat) - lse.narrow(0, s, n).unsqueeze(1)).exp_().mul_(-gs);
    d.scatter_add_(1, targets.narrow(0, s, n).unsqueeze(1), gs);
    part.copy_(d);
  }
}

}  // namespace posttrain::kernels
