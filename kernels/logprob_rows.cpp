// See logprob_rows.h. Three paths: our CUDA kernels (CUDA builds), one pass each way per row on
// CPU float32 (our loops, cpu_vec.h), and ATen over `chunk` rows at a time everywhere else.
#include "kernels/logprob_rows.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>

#include "kernels/cpu_vec.h"
#include "kernels/device.h"

namespace posttrain::kernels {

bool cuda_kernels_enabled() { return cuda_kernels_on(); }

namespace {

constexpr int64_t kLanes = 16;  // partial results per row reduction (two AVX2 registers)

// CPU float32, rows split over ATen's threads. Forward per row: the max (cpu::max_of),
// s = sum exp(x - max), lse = max + log s, logprob = x[target] - lse.
void rows_forward_cpu(const at::Tensor& logits, const at::Tensor& targets, at::Tensor& lse,
                      at::Tensor& lp) {
  const int64_t m = logits.size(0), v = logits.size(1);
  const float* xp = logits.data_ptr<float>();
  const int64_t* tp = targets.data_ptr<int64_t>();
  float* lsep = lse.data_ptr<float>();
  float* lpp = lp.data_ptr<float>();
  at::parallel_for(0, m, std::max<int64_t>(1, 32768 / v), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* x = xp + r * v;
      float mx = 0.0f, sum = 0.0f;
      cpu::run_isa([&] {
        mx = cpu::max_of(x, v);
        const float* __restrict xf = x;
        float acc[kLanes] = {};
        int64_t j = 0;
        for (; j + kLanes <= v; j += kLanes) {
          for (int64_t k = 0; k < kLanes; ++k) acc[k] += cpu::exp_neg_clamped(mx - xf[j + k]);
        }
        for (int64_t k = 0; k < kLanes; ++k) sum += acc[k];
        for (; j < v; ++j) sum += cpu::exp_neg_clamped(mx - xf[j]);
      });
      const float l = mx + std::log(sum);
      lsep[r] = l;
      lpp[r] = x[tp[r]] - l;
    }
  });
}

// Backward in place per row: x[j] <- -g exp(x[j] - lse), then x[target] += g.
void rows_backward_cpu(at::Tensor& logits, const at::Tensor& targets, const at::Tensor& lse,
                       const at::Tensor& grad) {
  const int64_t m = logits.size(0), v = logits.size(1);
  float* xp = logits.data_ptr<float>();
  const int64_t* tp = targets.data_ptr<int64_t>();
  const float* lsep = lse.data_ptr<float>();
  const float* gp = grad.data_ptr<float>();
  at::parallel_for(0, m, std::max<int64_t>(1, 32768 / v), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float l = lsep[r], g = gp[r];
      float* x = xp + r * v;
      cpu::run_isa([&] {
        float* __restrict xr = x;
        for (int64_t j = 0; j < v; ++j) xr[j] = -g * cpu::exp_neg_clamped(l - xr[j]);
      });
      x[tp[r]] += g;
    }
  });
}

bool use_cpu_loops(const at::Tensor& logits) {
  return logits.is_cpu() && logits.scalar_type() == at::kFloat && logits.is_contiguous() &&
         logits.size(1) > 0;
}

}  // namespace

std::pair<at::Tensor, at::Tensor> logprob_rows_forward(const at::Tensor& logits,
                                                       const at::Tensor& targets, int64_t chunk) {
  TORCH_CHECK(logits.dim() == 2 && targets.dim() == 1 && targets.size(0) == logits.size(0),
              "logprob_rows_forward: logits [M, V] and targets [M], got ", logits.sizes(), " and ",
              targets.sizes());
  const int64_t m = logits.size(0);
  auto lse = at::empty({m}, logits.options().dtype(at::kFloat));  // [M]
  auto lp = at::empty({m}, logits.options().dtype(at::kFloat));   // [M]
#ifdef POSTTRAIN_HAS_CUDA_KERNELS
  if (use_cuda_kernels(logits) && kernel_dtype(logits.scalar_type())) {
    const auto x = logits.contiguous();
    const auto t = targets.to(x.device(), at::kLong).contiguous();  // the kernel reads it there
    const c10::OptionalDeviceGuard device(x.device());
    cuda::logprob_rows_forward(x.data_ptr(), dtype_of(x), t.data_ptr<int64_t>(), m, x.size(1),
                               lse.data_ptr<float>(), lp.data_ptr<float>(), stream_of(x));
    check_launch();
    return {lse, lp};
  }
#endif
  if (use_cpu_loops(logits)) {
    rows_forward_cpu(logits, targets.to(at::kLong).contiguous(), lse, lp);
    return {lse, lp};
  }
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
  if (use_cuda_kernels(logits) && logits.is_contiguous() &&
      kernel_dtype(logits.scalar_type())) {
    const auto t = targets.to(logits.device(), at::kLong).contiguous();
    const auto l = lse.to(logits.device(), at::kFloat).contiguous();
    const auto gd = g.to(logits.device());
    const c10::OptionalDeviceGuard device(logits.device());
    cuda::logprob_rows_backward_inplace(logits.data_ptr(), dtype_of(logits), t.data_ptr<int64_t>(),
                                        l.data_ptr<float>(), gd.data_ptr<float>(), m,
                                        logits.size(1), stream_of(logits));
    check_launch();
    return;
  }
#endif
  if (use_cpu_loops(logits)) {
    rows_backward_cpu(logits, targets.to(at::kLong).contiguous(), lse.contiguous(), g);
    return;
  }
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
