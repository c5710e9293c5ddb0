// See linear.h. Under autocast one Function, AutocastLinear, covers linear and linear_fused: it
// runs with ATen's autocast keys excluded (its operands are already in the autocast dtype, and
// ATen must not cast them again) and saves the input and the weights once, in that dtype.
#include "core/model/linear.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/DispatchKeySet.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/autograd.h>

#include <atomic>
#include <optional>

#include "core/model/autocast_scope.h"

namespace posttrain::core {
namespace {

bool is_low(at::ScalarType t) { return t == at::kBFloat16 || t == at::kHalf; }

// The dtype AutocastLinear runs in, or nullopt for plain at::linear: autocast is on for x's
// device with a 16-bit dtype, x is float32 or 16-bit, and every weight is float32 on x's device
// (bf16 weights need no master-weight handling; float64 is never autocast).
std::optional<at::ScalarType> autocast_dtype(const at::Tensor& x, at::TensorList weights) {
  const auto active = active_autocast_dtype(x.device().type());
  if (!active) return std::nullopt;
  const auto low = *active;
  if (!is_low(low) || !(x.scalar_type() == at::kFloat || is_low(x.scalar_type()))) {
    return std::nullopt;
  }
  for (const auto& w : weights) {
    if (w.scalar_type() != at::kFloat || w.device() != x.device()) return std::nullopt;
  }
  return low;
}

// The weights cast to dtype, stacked along the output dim: [sum out_i, in], one pass each.
at::Tensor stack_as(at::TensorList weights, at::ScalarType dtype) {
  if (weights.size() == 1) return weights[0].to(dtype);
  int64_t rows = 0;
  for (const auto& w : weights) rows += w.size(0);
  auto out = at::empty({rows, weights[0].size(1)}, weights[0].options().dtype(dtype));
  int64_t offset = 0;
  for (const auto& w : weights) {
    out.narrow(0, offset, w.size(0)).copy_(w);
    offset += w.size(0);
  }
  return out;
}

// x [..., in] (float32 or 16-bit), weights float32 [out_i, in]. Stacked: one output
// [..., sum out_i]; separate: one [..., out_i] per weight; all in `dtype`. Backward: x's
// gradient in x's dtype, each weight's in float32, both accumulated in float32 by the GEMMs.
struct AutocastLinear : torch::autograd::Function<AutocastLinear> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& x, at::TensorList weights,
                                                at::ScalarType dtype, bool stacked) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const int64_t in = x.size(-1);
    const auto x2d = x.reshape({-1, in}).to(dtype);  // [N, in]
    auto out_sizes = x.sizes().vec();
    torch::autograd::variable_list outputs, saved{x2d};
    if (stacked) {
      const auto w = stack_as(weights, dtype);  // [sum out_i, in]
      out_sizes.back() = w.size(0);
      outputs.push_back(at::mm(x2d, w.t()).view(out_sizes));
      saved.push_back(w);
    } else {
      for (const auto& weight : weights) {
        const auto w = weight.to(dtype);  // [out_i, in]
        out_sizes.back() = w.size(0);
        outputs.push_back(at::mm(x2d, w.t()).view(out_sizes));
        saved.push_back(w);
      }
    }
    std::vector<int64_t> rows;
    for (const auto& w : weights) rows.push_back(w.size(0));
    ctx->save_for_backward(saved);
    ctx->saved_data["x_sizes"] = x.sizes().vec();
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["rows"] = rows;
    ctx->saved_data["stacked"] = stacked;
    return outputs;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const auto saved = ctx->get_saved_variables();
    const auto& x2d = saved[0];  // [N, in]
    const auto x_sizes = ctx->saved_data["x_sizes"].toIntVector();
    const auto x_dtype = static_cast<at::ScalarType>(ctx->saved_data["x_dtype"].toInt());
    const auto rows = ctx->saved_data["rows"].toIntVector();
    const size_t n = rows.size();
    // Gradients for x, each weight, dtype and stacked.
    torch::autograd::variable_list out(n + 3);
    const bool want_x = ctx->needs_input_grad(0);
    if (ctx->saved_data["stacked"].toBool()) {
      const auto& w = saved[1];                                              // [S, in]
      const auto g = grads[0].reshape({-1, w.size(0)}).to(w.scalar_type());  // [N, S]
      if (want_x) out[0] = mm_as(g, w, x_dtype).view(x_sizes);
      bool want_w = false;
      for (size_t i = 0; i < n; ++i) want_w = want_w || ctx->needs_input_grad(1 + i);
      if (want_w) {
        const auto gw = mm_as(g.t(), x2d, at::kFloat);  // [S, in] float32
        int64_t offset = 0;
        for (size_t i = 0; i < n; ++i) {
          if (ctx->needs_input_grad(1 + i)) out[1 + i] = gw.narrow(0, offset, rows[i]);
          offset += rows[i];
        }
      }
    } else {
      at::Tensor gx;  // [N, in] in x's dtype, summed over the weights
      for (size_t i = 0; i < n; ++i) {
        const auto& w = saved[1 + i];                                          // [out_i, in]
        const auto g = grads[i].reshape({-1, w.size(0)}).to(w.scalar_type());  // [N, out_i]
        if (want_x) {
          if (gx.defined()) {
            addmm_as_(gx, g, w);
          } else {
            gx = mm_as(g, w, x_dtype);
          }
        }
        if (ctx->needs_input_grad(1 + i)) out[1 + i] = mm_as(g.t(), x2d, at::kFloat);
      }
      if (want_x) out[0] = gx.view(x_sizes);
    }
    return out;
  }
};

}  // namespace

at::Tensor mm_as(const at::Tensor& a, const at::Tensor& b, at::ScalarType out_dtype) {
  const auto in = a.scalar_type();
  if (b.scalar_type() == in && out_dtype == in) return at::mm(a, b);
  if (b.scalar_type() == in && out_dtype == at::kFloat && is_low(in)) {
    if (a.is_cuda()) return at::mm(a, b, at::kFloat);
    return at::mm(a.to(at::kFloat), b.to(at::kFloat));
  }
  return at::mm(a, b.to(in)).to(out_dtype);
}

void addmm_as_(at::Tensor& acc, const at::Tensor& a, const at::Tensor& b) {
  const auto in = a.scalar_type();
  if (b.scalar_type() == in && acc.scalar_type() == in) {
    acc.addmm_(a, b);
    return;
  }
  if (b.scalar_type() == in && acc.scalar_type() == at::kFloat && is_low(in)) {
    if (!a.is_cuda()) {
      acc.addmm_(a.to(at::kFloat), b.to(at::kFloat));
      return;
    }
    // aten::addmm.dtype takes a float32 `self` with 16-bit operands in recent LibTorch (older
    // ones insisted self match the operands); remember a refusal and add separately then.
    static std::atomic<bool> refused{false};
    if (!refused.load(std::memory_order_relaxed)) {
      try {
        at::addmm_out(acc, acc, a, b, at::kFloat);
        return;
      } catch (const c10::Error&) {
        refused.store(true, std::memory_order_relaxed);
      }
    }
    acc.add_(at::mm(a, b, at::kFloat));
    return;
  }
  acc.add_(mm_as(a, b, acc.scalar_type()));
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight) {
  const auto dtype = autocast_dtype(x, weight);
  if (!dtype) return at::linear(x, weight);
  return AutocastLinear::apply(x, at::TensorList(weight), *dtype, /*stacked=*/true)[0];
}

std::vector<at::Tensor> linear_fused(const at::Tensor& x, at::TensorList weights,
                                     FusedLayout layout) {
  TORCH_CHECK(!weights.empty(), "linear_fused: no weights");
  std::vector<int64_t> rows;
  for (const auto& w : weights) {
    TORCH_CHECK(w.dim() == 2 && w.size(1) == x.size(-1), "linear_fused: weight ", w.sizes(),
                " does not take inputs of ", x.size(-1), " features");
    rows.push_back(w.size(0));
  }
  const bool stacked = layout == FusedLayout::kStacked && weights.size() > 1;
  if (const auto dtype = autocast_dtype(x, weights)) {
    auto outs = AutocastLinear::apply(x, weights, *dtype, stacked);
    if (stacked) return outs[0].split_with_sizes(rows, -1);
    return outs;
  }
  // Float32: one at::linear per weight. One GEMM against at::cat(weights) measured no faster on
  // the CPU shapes of tiny and smol-135m (it pays a weight copy per call and a gradient split).
  std::vector<at::Tensor> outs;
  for (const auto& w : weights) outs.push_back(at::linear(x, w));
  return outs;
}

}  // namespace posttrain::core
