// See rms_norm.h. One autograd Function serves rms_norm and add_rms_norm on our CUDA kernels and
// on the CPU float32 loop; everything else composes ATen ops. CPU float32 path: rows split over
// ATen's intra-op threads; with s = residual + branch (or s = x) per row and r = 1/rms(s),
//   y = w * (s r),
//   ds = r * (g w) - s * r^3 * mean(g w s) + d_sum,   dweight = sum over rows of g * s * r,
// the weight gradient summed per thread in float64, then across threads in a fixed order.
#include "kernels/rms_norm.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu_vec.h"
#include "kernels/device.h"

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

// res [N, H] (+ br [N, H], or null), w [H], all float32 contiguous -> sum [N, H] (when br),
// y [N, H], r [N]. The norm reads the stored sum, so add-then-norm equals norm(sum) exactly.
void forward_rows(const float* res, const float* br, const float* w, int64_t n, int64_t h,
                  double eps, float* sum, float* y, float* r) {
  const float e = static_cast<float>(eps), inv_h = 1.0f / static_cast<float>(h);
  at::parallel_for(0, n, grain_rows(h), [&](int64_t begin, int64_t end) {
    cpu::run_isa([&] {
      for (int64_t i = begin; i < end; ++i) {
        const float* xi = res + i * h;
        if (br != nullptr) {
          const float* __restrict ai = res + i * h;
          const float* __restrict bi = br + i * h;
          float* __restrict si = sum + i * h;
          for (int64_t j = 0; j < h; ++j) si[j] = ai[j] + bi[j];
          xi = si;
        }
        const float* __restrict xr = xi;
        const float* __restrict wi = w;
        float* __restrict yi = y + i * h;
        const float ri = 1.0f / std::sqrt(dot(xr, xr, h) * inv_h + e);
        r[i] = ri;
        for (int64_t j = 0; j < h; ++j) yi[j] = wi[j] * (xr[j] * ri);
      }
    });
  });
}

// g (d normed), x (the stored sum), r, w as in forward_rows; gs (d sum) may be null. Writes
// dx [N, H] (and the same to dbr unless null) and dw [H].
void backward_rows(const float* g, const float* gs, const float* x, const float* w,
                   const float* r, int64_t n, int64_t h, float* dx, float* dbr, float* dw) {
  const int threads = at::get_num_threads();
  std::vector<double> partial(static_cast<size_t>(threads) * h, 0.0);  // [threads, H]
  const float inv_h = 1.0f / static_cast<float>(h);
  at::parallel_for(0, n, grain_rows(h), [&](int64_t begin, int64_t end) {
    double* acc = partial.data() + static_cast<size_t>(at::get_thread_num()) * h;
    cpu::run_isa([&] {
      for (int64_t i = begin; i < end; ++i) {
        const float* __restrict gi = g + i * h;
        const float* __restrict xi = x + i * h;
        const float* __restrict wi = w;
        float* __restrict dxi = dx + i * h;
        double* __restrict ai = acc;
        const float ri = r[i];
        float sum[kLanes] = {};
        int64_t j = 0;
        for (; j + kLanes <= h; j += kLanes) {
          for (int64_t k = 0; k < kLanes; ++k) sum[k] += gi[j + k] * wi[j + k] * xi[j + k];
        }
        float s = 0.0f;
        for (int64_t k = 0; k < kLanes; ++k) s += sum[k];
        for (; j < h; ++j) s += gi[j] * wi[j] * xi[j];
        const float c = ri * ri * ri * s * inv_h;
        if (gs == nullptr) {
          for (int64_t q = 0; q < h; ++q) dxi[q] = ri * (gi[q] * wi[q]) - xi[q] * c;
        } else {
          const float* __restrict gsi = gs + i * h;
          for (int64_t q = 0; q < h; ++q) dxi[q] = (ri * (gi[q] * wi[q]) - xi[q] * c) + gsi[q];
        }
        if (dbr != nullptr) {
          float* __restrict di = dbr + i * h;
          for (int64_t q = 0; q < h; ++q) di[q] = dxi[q];
        }
        for (int64_t q = 0; q < h; ++q) ai[q] += static_cast<double>(gi[q] * (xi[q] * ri));
      }
    });
  });
  for (int64_t j = 0; j < h; ++j) {
    double t = 0.0;
    for (int k = 0; k < threads; ++k) t += partial[static_cast<size_t>(k) * h + j];
    dw[j] = static_cast<float>(t);
  }
}

// Our kernels' add + norm (CUDA, or the CPU float32 loop). Inputs: residual, branch (nullopt:
// plain norm; autograd takes no undefined tensor inputs), weight, eps, out dtype. Outputs
// {sum, normed} with a branch, else {normed}; sum is saved for backward (it is the residual
// stream, alive anyway). Gradients of unused outputs stay undefined (not materialised).
struct AddRmsNormFunction : torch::autograd::Function<AddRmsNormFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& residual,
                                                const std::optional<at::Tensor>& branch_in,
                                                const at::Tensor& weight, double eps,
                                                int64_t out_type) {
    ctx->set_materialize_grads(false);
    const at::Tensor branch = branch_in.value_or(at::Tensor());
    const auto out_dtype = static_cast<at::ScalarType>(out_type);
    const int64_t h = residual.size(-1);
    const auto res = residual.contiguous().view({-1, h});  // [N, H]
    const int64_t n = res.size(0);
    const bool has_branch = branch.defined();
    const auto br = has_branch ? branch.contiguous().view({-1, h}) : at::Tensor();  // [N, H]
    const auto w = weight.to(at::kFloat).contiguous();                               // [H]
    auto sum = has_branch ? at::empty_like(res) : res;                              // [N, H]
    auto out = at::empty({n, h}, res.options().dtype(out_dtype));                   // [N, H]
    auto r = at::empty({n}, res.options().dtype(at::kFloat));                       // [N]
#ifdef POSTTRAIN_HAS_CUDA_KERNELS
    if (res.is_cuda()) {
      const c10::OptionalDeviceGuard device(res.device());
      cuda::add_rms_norm_forward(
          res.data_ptr(), dtype_of(res), has_branch ? br.data_ptr() : nullptr,
          has_branch ? dtype_of(br) : dtype_of(res), w.data_ptr<float>(), n, h,
          static_cast<float>(eps), has_branch ? sum.data_ptr() : nullptr, out.data_ptr(),
          dtype_of(out), r.data_ptr<float>(), stream_of(res));
      check_launch();
    } else
#endif
    {
      forward_rows(res.data_ptr<float>(), has_branch ? br.data_ptr<float>() : nullptr,
                   w.data_ptr<float>(), n, h, eps, has_branch ? sum.data_ptr<float>() : nullptr,
                   out.data_ptr<float>(), r.data_ptr<float>());
    }
    ctx->save_for_backward({sum, w, r});
    ctx->saved_data["sizes"] = residual.sizes().vec();
    ctx->saved_data["branch_type"] =
        static_cast<int64_t>(has_branch ? branch.scalar_type() : residual.scalar_type());
    ctx->saved_data["weight_type"] = static_cast<int64_t>(weight.scalar_type());
    ctx->saved_data["has_branch"] = has_branch;
    const auto normed = out.view(residual.sizes());
    if (!has_branch) return {normed};
    return {sum.view(residual.sizes()), normed};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];  // [N, H] the stored sum (or the input)
    const auto& w = saved[1];  // [H] float32
    const auto& r = saved[2];  // [N]
    const int64_t n = x.size(0), h = x.size(1);
    const bool has_branch = ctx->saved_data["has_branch"].toBool();
    const auto sizes = ctx->saved_data["sizes"].toIntVector();
    const auto branch_type = static_cast<at::ScalarType>(ctx->saved_data["branch_type"].toInt());
    const auto weight_type = static_cast<at::ScalarType>(ctx->saved_data["weight_type"].toInt());
    const auto& g_out = grads[has_branch ? 1 : 0];
    at::Tensor g = g_out.defined() ? g_out.contiguous().view({n, h})
                                   : at::zeros({n, h}, x.options());  // [N, H]
    at::Tensor gs;                                                     // [N, H] or undefined
    if (has_branch && grads[0].defined()) {
      gs = grads[0].to(x.scalar_type()).contiguous().view({n, h});
    }
    const bool want_branch = has_branch && ctx->needs_input_grad(1);  // (x, branch, w, ...)
    // A branch of the residual's dtype gets the residual's gradient tensor itself, as ATen's
    // add does (autograd never accumulates in place into a tensor held twice); else its own
    // copy in its dtype, written by the same pass.
    const bool share = want_branch && branch_type == x.scalar_type();
    const bool write_branch = want_branch && !share;
    auto dx = at::empty_like(x);
    auto dbr = write_branch ? at::empty({n, h}, x.options().dtype(branch_type)) : at::Tensor();
    auto dw = at::empty({h}, w.options());
#ifdef POSTTRAIN_HAS_CUDA_KERNELS
    if (x.is_cuda()) {
      const c10::OptionalDeviceGuard device(x.device());
      auto work = at::empty({cuda::add_rms_norm_partials(n), h}, w.options());
      cuda::add_rms_norm_backward(
          g.data_ptr(), dtype_of(g), gs.defined() ? gs.data_ptr() : nullptr, x.data_ptr(),
          dtype_of(x), w.data_ptr<float>(), r.data_ptr<float>(), n, h, dx.data_ptr(),
          write_branch ? dbr.data_ptr() : nullptr, write_branch ? dtype_of(dbr) : dtype_of(x),
          work.data_ptr<float>(), dw.data_ptr<float>(), stream_of(x));
      check_launch();
    } else
#endif
    {
      g = g.to(at::kFloat);
      backward_rows(g.data_ptr<float>(), gs.defined() ? gs.data_ptr<float>() : nullptr,
                    x.data_ptr<float>(), w.data_ptr<float>(), r.data_ptr<float>(), n, h,
                    dx.data_ptr<float>(), write_branch ? dbr.data_ptr<float>() : nullptr,
                    dw.data_ptr<float>());
    }
    at::Tensor d_branch;
    if (want_branch) d_branch = (share ? dx : dbr).view(sizes);
    return {dx.view(sizes), d_branch, dw.to(weight_type), at::Tensor(), at::Tensor()};
  }
};

std::optional<at::Tensor> optional_branch(const at::Tensor& branch) {
  if (!branch.defined()) return std::nullopt;
  return branch;
}

// ATen's RMSNorm of x in float32 (rounded to x's dtype before the weight, as transformers does),
// in out_dtype.
at::Tensor aten_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps,
                         at::ScalarType out_dtype) {
  at::Tensor y;
  if (x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat) {
    y = at::rms_norm(x, {x.size(-1)}, weight, eps);
  } else {
    const auto xf = x.to(at::kFloat);
    const auto normed = xf * at::rsqrt(xf.pow(2).mean({-1}, true) + eps);
    y = weight * normed.to(x.scalar_type());
  }
  return y.scalar_type() == out_dtype ? y : y.to(out_dtype);
}

}  // namespace

std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& residual,
                                               const at::Tensor& branch,
                                               const at::Tensor& weight, double eps,
                                               std::optional<at::ScalarType> out_dtype) {
  TORCH_CHECK(residual.dim() >= 1 && weight.dim() == 1 && weight.size(0) == residual.size(-1),
              "rms_norm: x [..., H] and weight [H], got ", residual.sizes(), " and ",
              weight.sizes());
  TORCH_CHECK(!branch.defined() || branch.sizes() == residual.sizes(), "add_rms_norm: branch ",
              branch.sizes(), " differs from residual ", residual.sizes());
  const auto out = out_dtype.value_or(at::promote_types(residual.scalar_type(),
                                                        weight.scalar_type()));
  const bool has_branch = branch.defined();
  const bool same_device = weight.device() == residual.device() &&
                           (!has_branch || branch.device() == residual.device());
  const bool non_empty = residual.numel() > 0;
  // CUDA: float32 / bf16 everywhere (the weight is read as float32), rows within a grid.
  if (use_cuda_kernels(residual) && same_device && non_empty &&
      kernel_dtype(residual.scalar_type()) && kernel_dtype(weight.scalar_type()) &&
      kernel_dtype(out) && (!has_branch || kernel_dtype(branch.scalar_type())) &&
      residual.numel() / residual.size(-1) < (int64_t{1} << 31)) {
    auto outs = AddRmsNormFunction::apply(residual, optional_branch(branch), weight, eps,
                                          static_cast<int64_t>(out));
    if (!has_branch) return {residual, outs[0]};
    return {outs[0], outs[1]};
  }
  // CPU float32 residual and weight: our loop in float32 (a lower-precision branch is widened
  // first, as the add's type promotion would; a lower out dtype is a cast of the result).
  if (residual.is_cpu() && same_device && non_empty && residual.scalar_type() == at::kFloat &&
      weight.scalar_type() == at::kFloat &&
      (!has_branch || kernel_dtype(branch.scalar_type()) || branch.scalar_type() == at::kHalf)) {
    const auto br = has_branch ? branch.to(at::kFloat) : at::Tensor();
    auto outs = AddRmsNormFunction::apply(residual, optional_branch(br), weight, eps,
                                          static_cast<int64_t>(at::kFloat));
    const auto& normed = outs[has_branch ? 1 : 0];
    return {has_branch ? outs[0] : residual, normed.scalar_type() == out ? normed
                                                                         : normed.to(out)};
  }
  at::Tensor sum = residual;
  if (has_branch) {
    sum = residual + branch;
    if (sum.scalar_type() != residual.scalar_type()) sum = sum.to(residual.scalar_type());
  }
  return {sum, aten_rms_norm(sum, weight, eps, out)};
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps,
                    std::optional<at::ScalarType> out_dtype) {
  return add_rms_norm(x, at::Tensor(), weight, eps, out_dtype).second;
}

}  // namespace posttrain::kernels
