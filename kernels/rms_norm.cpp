// See rms_norm.h. CPU float32 path: rows split over ATen's intra-op threads; backward
//   dx = r * (g w) - x * r^3 * mean(g w x),   dweight = sum over rows of g * x * r
// (r = 1/rms of the row), the weight gradient summed per thread in float64, then across threads
// in a fixed order.
#include "kernels/rms_norm.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu_vec.h"

namespace posttrain::kernels {
namespace {

constexpr int64_t kLanes = 16;  // partial sums per row reduction (two AVX2 registers)

// Sum of a[j] * b[j] over j < n, in kLanes partial sums (a vectorisable reduction).
inline float dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  float acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int64_t k = 0; k < kLanes; ++k) acc[k] += a[j + k] * b[j + k];
  }
  float s = 0.0f;
  for (int64_t k = 0; k < kLanes; ++k) s += acc[k];
  for (; j < n; ++j) s += a[j] * b[j];
  return s;
}

int64_t grain_rows(int64_t h) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(h, 1)); }

// x [N, H], w [H] contiguous float32 -> y [N, H], r [N].
void forward_rows(const at::Tensor& x, const at::Tensor& w, double eps, at::Tensor& y,
                  at::Tensor& r) {
  const int64_t n = x.size(0), h = x.size(1);
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  float* rp = r.data_ptr<float>();
  const float e = static_cast<float>(eps), inv_h = 1.0f / static_cast<float>(h);
  at::parallel_for(0, n, grain_rows(h), [&](int64_t begin, int64_t end) {
    cpu::run_isa([&] {
      for (int64_t i = begin; i < end; ++i) {
        const float* __restrict xi = xp + i * h;
        float* __restrict yi = yp + i * h;
        const float* __restrict wi = wp;
        const float ri = 1.0f / std::sqrt(dot(xi, xi, h) * inv_h + e);
        rp[i] = ri;
        for (int64_t j = 0; j < h; ++j) yi[j] = wi[j] * (xi[j] * ri);
      }
    });
  });
}

// g, x [N, H], w [H], r [N] contiguous float32 -> dx [N, H], dw [H] (float32).
void backward_rows(const at::Tensor& g, const at::Tensor& x, const at::Tensor& w,
                   const at::Tensor& r, at::Tensor& dx, at::Tensor& dw) {
  const int64_t n = x.size(0), h = x.size(1);
  const float* gp = g.data_ptr<float>();
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* rp = r.data_ptr<float>();
  float* dxp = dx.data_ptr<float>();
  const int threads = at::get_num_threads();
  std::vector<double> partial(static_cast<size_t>(threads) * h, 0.0);  // [threads, H]
  const float inv_h = 1.0f / static_cast<float>(h);
  at::parallel_for(0, n, grain_rows(h), [&](int64_t begin, int64_t end) {
    double* acc = partial.data() + static_cast<size_t>(at::get_thread_num()) * h;
    cpu::run_isa([&] {
      for (int64_t i = begin; i < end; ++i) {
        const float* __restrict gi = gp + i * h;
        const float* __restrict xi = xp + i * h;
        const float* __restrict wi = wp;
        float* __restrict dxi = dxp + i * h;
        double* __restrict ai = acc;
        const float ri = rp[i];
        float sum[kLanes] = {};
        int64_t j = 0;
        for (; j + kLanes <= h; j += kLanes) {
          for (int64_t k = 0; k < kLanes; ++k) sum[k] += gi[j + k] * wi[j + k] * xi[j + k];
        }
        float s = 0.0f;
        for (int64_t k = 0; k < kLanes; ++k) s += sum[k];
        for (; j < h; ++j) s += gi[j] * wi[j] * xi[j];
        const float c = ri * ri * ri * s * inv_h;
        for (int64_t q = 0; q < h; ++q) {
          dxi[q] = ri * (gi[q] * wi[q]) - xi[q] * c;
          ai[q] += static_cast<double>(gi[q] * (xi[q] * ri));
        }
      }
    });
  });
  auto total = at::zeros({h}, at::kDouble);
  double* tp = total.data_ptr<double>();
  for (int t = 0; t < threads; ++t) {
    for (int64_t j = 0; j < h; ++j) tp[j] += partial[static_cast<size_t>(t) * h + j];
  }
  dw.copy_(total);
}

struct RmsNormCpu : torch::autograd::Function<RmsNormCpu> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& weight, double eps) {
    const int64_t h = x.size(-1);
    const auto x2 = x.contiguous().view({-1, h});  // [N, H]
    const auto w = weight.contiguous();
    auto y = at::empty_like(x2);
    auto r = at::empty({x2.size(0)}, x2.options());  // [N]
    forward_rows(x2, w, eps, y, r);
    ctx->save_for_backward({x2, w, r});
    return y.view(x.sizes());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x2 = saved[0];  // [N, H]
    const auto g = grads[0].contiguous().view(x2.sizes());
    auto dx = at::empty_like(x2);
    auto dw = at::empty({x2.size(1)}, x2.options());
    backward_rows(g, x2, saved[1], saved[2], dx, dw);
    return {dx.view(grads[0].sizes()), dw, at::Tensor()};
  }
};

}  // namespace

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(x.dim() >= 1 && weight.dim() == 1 && weight.size(0) == x.size(-1),
              "rms_norm: x [..., H] and weight [H], got ", x.sizes(), " and ", weight.sizes());
  if (x.is_cpu() && x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat &&
      x.numel() > 0) {
    return RmsNormCpu::apply(x, weight, eps);
  }
  if (x.scalar_type() == at::kFloat) return at::rms_norm(x, {x.size(-1)}, weight, eps);
  const auto xf = x.to(at::kFloat);
  const auto normed = xf * at::rsqrt(xf.pow(2).mean({-1}, true) + eps);
  return weight * normed.to(x.scalar_type());
}

}  // namespace posttrain::kernels
