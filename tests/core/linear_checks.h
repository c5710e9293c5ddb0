// Checks of core/model/linear.h and of the LM head's float32 gradient, written once for any
// device: linear_test.cpp runs them on CPU (CPU autocast in bf16), linear_cuda_test.cpp on CUDA.
//
// The bounds. bf16 keeps 8 significant bits, so rounding changes a value by at most u = 2^-8 of
// it, and a product of two rounded values is within 2u + u^2 of the exact product. A weight
// gradient sum_n g[n, o] x[n, i] built from bf16 g and x with float32 accumulation is therefore
// within (2u + u^2) S + (float32 error) of the float32 one, with S = sum_n |g| |x| (per element).
// Against the bf16-rounded operands themselves only float32 accumulation error remains: N terms
// cost at most about N 2^-24 S, far below 1e-5 S for the N used here.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/logprobs.h"
#include "core/model/autocast_scope.h"
#include "core/model/linear.h"
#include "core/model/llama.h"
#include "train_test_util.h"

namespace posttrain::core::testing {

constexpr double kBf16Roundoff = 1.0 / 256;
constexpr double kProductBound = 2 * kBf16Roundoff + kBf16Roundoff * kBf16Roundoff;
constexpr double kFloat32Sum = 1e-5;  // relative to S, for sums of a few dozen terms

inline at::Tensor f64(const at::Tensor& t) { return t.detach().cpu().to(at::kDouble); }
// The value a float32 tensor has once rounded to bf16, in float64.
inline at::Tensor bf16_f64(const at::Tensor& t) { return f64(t.detach().to(at::kBFloat16)); }
inline double l2(const at::Tensor& t) { return t.norm().item<double>(); }
// The share of nonzero elements of a float32 tensor that bf16 holds exactly. A float32 sum of
// many products almost never lands on a bf16 value (its low 16 bits are zero), so a gradient
// rounded through bf16 shows up as a share near 1, a float32-accumulated one near 0.
inline double bf16_exact_share(const at::Tensor& t) {
  const auto v = t.detach().cpu().to(at::kFloat);
  const auto nonzero = v.ne(0);
  const auto exact = v.eq(v.to(at::kBFloat16).to(at::kFloat)).logical_and(nonzero);
  return exact.sum().item<double>() / std::max<double>(1.0, nonzero.sum().item<double>());
}
inline double max_excess(const at::Tensor& err, const at::Tensor& bound) {
  return (err.abs() - bound).max().item<double>();  // <= 0 when err is within bound everywhere
}

// x [2, 9, 24] against three weights shaped like q, k, v projections, with fixed upstream
// gradients: the loss is sum_i <y_i, g_i>.
struct Problem {
  at::Tensor x;               // [2, 9, in] float32, CPU
  std::vector<at::Tensor> w;  // [out_i, in] float32, CPU
  std::vector<at::Tensor> g;  // [2, 9, out_i] float32, CPU
};

inline Problem make_problem(uint64_t seed, std::vector<int64_t> rows = {16, 8, 8},
                            int64_t in = 24) {
  at::manual_seed(seed);
  Problem p;
  p.x = at::randn({2, 9, in});
  for (int64_t r : rows) {
    p.w.push_back(at::randn({r, in}) * 0.3);
    p.g.push_back(at::randn({2, 9, r}));
  }
  return p;
}

enum class Mode { kAtenLinear, kCoreLinear, kStacked, kSeparate };

inline std::string mode_name(Mode m) {
  switch (m) {
    case Mode::kAtenLinear:
      return "at::linear";
    case Mode::kCoreLinear:
      return "core::linear";
    case Mode::kStacked:
      return "linear_fused stacked";
    case Mode::kSeparate:
      return "linear_fused separate";
  }
  return "?";
}

struct Result {
  std::vector<at::Tensor> y;   // CPU, as computed
  at::Tensor gx;               // CPU, x's dtype
  std::vector<at::Tensor> gw;  // CPU, as accumulated in .grad
};

// Forward (under autocast on dev's type when asked) and backward of sum_i <y_i, g_i> with fresh
// leaves, `backwards` times over (gradients accumulate; call k uses g * (k + 1)).
inline Result run(const Problem& p, Mode mode, at::Device dev, bool autocast,
                  at::ScalarType x_dtype = at::kFloat, int backwards = 1) {
  auto x = p.x.to(dev).to(x_dtype).detach().requires_grad_(true);
  std::vector<at::Tensor> w;
  for (const auto& t : p.w) w.push_back(t.to(dev).detach().requires_grad_(true));
  Result r;
  for (int k = 0; k < backwards; ++k) {
    std::vector<at::Tensor> y;
    {
      AutocastScope scope(dev.type(), autocast, at::kBFloat16);
      if (mode == Mode::kAtenLinear || mode == Mode::kCoreLinear) {
        for (const auto& wi : w) {
          y.push_back(mode == Mode::kAtenLinear ? at::linear(x, wi) : core::linear(x, wi));
        }
      } else {
        y = linear_fused(x, w,
                         mode == Mode::kStacked ? FusedLayout::kStacked : FusedLayout::kSeparate);
      }
    }
    at::Tensor loss = at::zeros({}, at::TensorOptions().device(dev));
    for (size_t i = 0; i < y.size(); ++i) {
      loss = loss + (y[i].to(at::kFloat) * (p.g[i] * (k + 1)).to(dev)).sum();
    }
    loss.backward();
    if (k == 0) {
      for (const auto& t : y) r.y.push_back(t.detach().cpu());
    }
  }
  r.gx = x.grad().cpu();
  for (const auto& t : w) r.gw.push_back(t.grad().cpu());
  return r;
}

// Without autocast every mode equals at::linear (values and gradients) to float32 rounding.
inline void expect_float32_equals_at_linear(at::Device dev) {
  const auto p = make_problem(1);
  const auto ref = run(p, Mode::kAtenLinear, dev, false);
  for (Mode mode : {Mode::kCoreLinear, Mode::kStacked, Mode::kSeparate}) {
    SCOPED_TRACE(mode_name(mode));
    const auto r = run(p, mode, dev, false);
    ASSERT_EQ(r.y.size(), ref.y.size());
    for (size_t i = 0; i < r.y.size(); ++i) {
      EXPECT_EQ(r.y[i].scalar_type(), at::kFloat);
      EXPECT_EQ(r.y[i].sizes(), ref.y[i].sizes());
      EXPECT_TRUE(at::allclose(r.y[i], ref.y[i], 1e-5, 1e-6));
      EXPECT_EQ(r.gw[i].scalar_type(), at::kFloat);
      EXPECT_TRUE(at::allclose(r.gw[i], ref.gw[i], 1e-5, 1e-6));
    }
    EXPECT_TRUE(at::allclose(r.gx, ref.gx, 1e-5, 1e-6));
  }
}

// Under bf16 autocast with float32 weights and a float32 x:
// - outputs are bf16 and equal at::linear under autocast to one bf16 rounding step (one GEMM
//   over stacked weights may round its float32 sums on the other side of a bf16 boundary);
// - each weight gradient is float32, equals the float32 sum of the bf16-rounded operands, is
//   within the bf16 product bound of the float32 gradient, and is no further from it than
//   autocast's bf16-rounded gradient;
// - x's gradient is float32 and likewise no further from the float32 one than autocast's.
inline void expect_autocast_properties(at::Device dev) {
  const auto p = make_problem(2);
  const auto aten = run(p, Mode::kAtenLinear, dev, true);
  const auto xb = bf16_f64(p.x).reshape({-1, p.x.size(-1)});  // [N, in]
  const auto x32 = f64(p.x).reshape({-1, p.x.size(-1)});
  at::Tensor gx32 = at::zeros_like(x32), gx_scale = at::zeros_like(x32);
  for (size_t i = 0; i < p.w.size(); ++i) {
    const auto g = f64(p.g[i]).reshape({-1, p.w[i].size(0)});  // [N, out]
    gx32 += g.mm(f64(p.w[i]));
    gx_scale += g.abs().mm(f64(p.w[i]).abs());
  }
  for (Mode mode : {Mode::kCoreLinear, Mode::kStacked, Mode::kSeparate}) {
    SCOPED_TRACE(mode_name(mode));
    const auto r = run(p, mode, dev, true);
    ASSERT_EQ(r.y.size(), p.w.size());
    for (size_t i = 0; i < p.w.size(); ++i) {
      SCOPED_TRACE("weight " + std::to_string(i));
      EXPECT_EQ(r.y[i].scalar_type(), at::kBFloat16);
      EXPECT_EQ(r.y[i].sizes(), aten.y[i].sizes());
      const auto want = f64(aten.y[i]);
      EXPECT_LE(max_excess(f64(r.y[i]) - want, 2 * kBf16Roundoff * want.abs() + 1e-6), 0.0);

      ASSERT_EQ(r.gw[i].scalar_type(), at::kFloat);
      const auto g32 = f64(p.g[i]).reshape({-1, p.w[i].size(0)});  // [N, out]
      const auto gb = bf16_f64(p.g[i]).reshape({-1, p.w[i].size(0)});
      const auto exact = gb.t().mm(xb);              // bf16 operands, exact sum
      const auto scale = gb.abs().t().mm(xb.abs());  // S
      const auto ref32 = g32.t().mm(x32);            // the float32 gradient
      const auto got = f64(r.gw[i]);
      EXPECT_LE(max_excess(got - exact, kFloat32Sum * scale), 0.0);
      EXPECT_LE(max_excess(got - ref32, (kProductBound + kFloat32Sum) * scale), 0.0);
      EXPECT_LE(l2(got - ref32), l2(f64(aten.gw[i]) - ref32));
      EXPECT_LT(bf16_exact_share(r.gw[i]), 0.2);
      EXPECT_GT(bf16_exact_share(aten.gw[i]), 0.99);  // autocast's: rounded through bf16
    }
    ASSERT_EQ(r.gx.scalar_type(), at::kFloat);
    const auto gx = f64(r.gx).reshape({-1, p.x.size(-1)});
    EXPECT_LE(max_excess(gx - gx32, (kProductBound + kFloat32Sum) * gx_scale), 0.0);
    EXPECT_LE(l2(gx - gx32), l2(f64(aten.gx).reshape({-1, p.x.size(-1)}) - gx32));
  }
}

// A bf16 x (attention's output, SwiGLU's): its gradient comes back bf16, the weights' float32.
inline void expect_autocast_bf16_input(at::Device dev) {
  const auto p = make_problem(3);
  const auto aten = run(p, Mode::kAtenLinear, dev, true, at::kBFloat16);
  const auto xb = bf16_f64(p.x).reshape({-1, p.x.size(-1)});
  for (Mode mode : {Mode::kCoreLinear, Mode::kStacked, Mode::kSeparate}) {
    SCOPED_TRACE(mode_name(mode));
    const auto r = run(p, mode, dev, true, at::kBFloat16);
    ASSERT_EQ(r.gx.scalar_type(), at::kBFloat16);
    // Both sum three bf16 products' contributions; each rounds a few times: 4 u of the scale.
    at::Tensor scale = at::zeros_like(xb);
    for (size_t i = 0; i < p.w.size(); ++i) {
      scale += f64(p.g[i]).reshape({-1, p.w[i].size(0)}).abs().mm(f64(p.w[i]).abs());
    }
    EXPECT_LE(max_excess(f64(r.gx).reshape_as(xb) - f64(aten.gx).reshape_as(xb),
                         4 * kBf16Roundoff * scale + 1e-6),
              0.0);
    for (size_t i = 0; i < p.w.size(); ++i) {
      ASSERT_EQ(r.gw[i].scalar_type(), at::kFloat);
      const auto gb = bf16_f64(p.g[i]).reshape({-1, p.w[i].size(0)});
      EXPECT_LE(max_excess(f64(r.gw[i]) - gb.t().mm(xb), kFloat32Sum * gb.abs().t().mm(xb.abs())),
                0.0);
    }
  }
}

// Two backward calls accumulate the float32 gradients (.grad of fused weights may be row blocks
// of one buffer: the second call must add into each block only).
inline void expect_gradients_accumulate(at::Device dev) {
  const auto p = make_problem(4);
  for (Mode mode : {Mode::kCoreLinear, Mode::kStacked, Mode::kSeparate}) {
    SCOPED_TRACE(mode_name(mode));
    auto p2 = p;
    for (auto& g : p2.g) g = g * 2;
    const auto once = run(p, mode, dev, true);
    const auto twice_alone = run(p2, mode, dev, true);
    const auto both = run(p, mode, dev, true, at::kFloat, /*backwards=*/2);
    for (size_t i = 0; i < p.w.size(); ++i) {
      ASSERT_EQ(both.gw[i].scalar_type(), at::kFloat);
      EXPECT_TRUE(at::allclose(both.gw[i], once.gw[i] + twice_alone.gw[i], 1e-6, 1e-6));
    }
    EXPECT_TRUE(at::allclose(both.gx, once.gx + twice_alone.gx, 1e-6, 1e-6));
  }
}

// Parameters' gradients of a tiny model's mean token log-prob loss, under bf16 autocast on dev.
inline std::vector<at::Tensor> model_grads(LlamaModel& model, const at::Tensor& ids, at::Device dev,
                                           bool autocast, double* loss_out = nullptr) {
  model->zero_grad();
  at::Tensor loss;
  {
    AutocastScope scope(dev.type(), autocast, at::kBFloat16);
    const auto lp = token_logprobs(*model, {ids.to(dev), {}, {}, {}});
    loss = -lp.sum() / static_cast<double>(lp.numel());
  }
  loss.backward();
  if (loss_out) *loss_out = loss.item<double>();
  std::vector<at::Tensor> grads;
  for (const auto& p : model->parameters()) grads.push_back(p.grad().cpu());
  return grads;
}

// Activation checkpointing recomputes each layer under the forward's autocast state; the
// gradients must be those of the plain run: bitwise on CPU, to `tol` (relative) elsewhere.
inline void expect_checkpointing_changes_nothing(at::Device dev, double tol) {
  auto config = tiny_config();
  LlamaModel plain(config), ckpt(config);
  plain->reset_parameters(7);
  ckpt->reset_parameters(7);
  plain->to(dev);
  ckpt->to(dev);
  ckpt->set_activation_checkpointing(true);
  at::manual_seed(8);
  const auto ids = at::randint(0, config.vocab_size, {2, 16}, at::kLong);
  double l_plain = 0, l_ckpt = 0;
  const auto a = model_grads(plain, ids, dev, true, &l_plain);
  const auto b = model_grads(ckpt, ids, dev, true, &l_ckpt);
  if (tol == 0) {
    EXPECT_EQ(l_plain, l_ckpt);
  } else {
    EXPECT_NEAR(l_plain, l_ckpt, tol * std::abs(l_plain));
  }
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].scalar_type(), at::kFloat);
    ASSERT_EQ(b[i].scalar_type(), at::kFloat);
    // Every matrix (projections, embedding/head) gets a float32-accumulated gradient.
    if (a[i].dim() == 2) {
      EXPECT_LT(bf16_exact_share(a[i]), 0.2) << "parameter " << i;
    }
    if (tol == 0) {
      EXPECT_TRUE(at::equal(a[i], b[i])) << "parameter " << i;
    } else {
      EXPECT_LE(l2(f64(a[i]) - f64(b[i])), tol * l2(f64(a[i]))) << "parameter " << i;
    }
  }
}

// The LM head under autocast through target_logprobs (logits kept, or recomputed per chunk):
// the head weight's gradient is float32, near the float32 one, the same on both paths; with a
// tied head the embedding's gradient is the untied embedding's plus the untied head's, to
// tied_tol of its norm (float32 rounding on CPU; on CUDA attention's backward may sum in
// another order from run to run).
inline void expect_head_gradients(at::Device dev, double tied_tol) {
  auto tied_cfg = tiny_config();
  tied_cfg.tie_word_embeddings = true;
  auto untied_cfg = tied_cfg;
  untied_cfg.tie_word_embeddings = false;
  LlamaModel tied(tied_cfg), untied(untied_cfg);
  tied->reset_parameters(9);
  {
    at::NoGradGuard no_grad;
    auto from = tied->named_parameters();
    for (auto& item : untied->named_parameters()) {
      const auto key = item.key() == "lm_head.weight" ? "model.embed_tokens.weight" : item.key();
      item.value().copy_(from[key]);
    }
  }
  tied->to(dev);
  untied->to(dev);
  at::manual_seed(10);
  const auto ids = at::randint(0, tied_cfg.vocab_size, {2, 12}, at::kLong);
  // All parameters' gradients of one model's head loss, under autocast or not, with the logits
  // kept or recomputed (chunks of 5 tokens).
  auto head_grads = [&](LlamaModel& m, bool autocast, bool keep) {
    m->zero_grad();
    const auto in = ids.to(dev);
    at::Tensor loss;
    {
      AutocastScope scope(dev.type(), autocast, at::kBFloat16);
      const auto hidden = m->hidden_states({in, {}, {}, {}});  // [B, T, H]
      auto targets = in.narrow(1, 1, in.size(1) - 1).clone();  // [B, T-1]
      targets.select(0, 1).narrow(0, 0, 3).fill_(kIgnoreTarget);
      const auto lp = target_logprobs(*m, hidden.narrow(1, 0, in.size(1) - 1), targets,
                                      /*chunk_tokens=*/5, keep ? int64_t{1} << 30 : 0);
      loss = -lp.sum() / static_cast<double>(targets.ne(kIgnoreTarget).sum().item<int64_t>());
    }
    loss.backward();
    std::map<std::string, at::Tensor> g;
    for (const auto& item : m->named_parameters()) g[item.key()] = item.value().grad().cpu();
    return g;
  };
  const auto ref_head = f64(head_grads(untied, false, true).at("lm_head.weight"));  // float32
  std::map<std::string, at::Tensor> kept_untied;
  for (bool keep : {true, false}) {
    SCOPED_TRACE(keep ? "logits kept" : "logits recomputed");
    const auto u = head_grads(untied, true, keep);
    const auto t = head_grads(tied, true, keep);
    const auto& head = u.at("lm_head.weight");
    ASSERT_EQ(head.scalar_type(), at::kFloat);
    EXPECT_LT(bf16_exact_share(head), 0.2);  // written in float32, not rounded through bf16
    ASSERT_EQ(t.at("model.embed_tokens.weight").scalar_type(), at::kFloat);
    // bf16 logits and d(logits) move the head gradient by about a percent at most.
    EXPECT_LE(l2(f64(head) - ref_head), 2e-2 * l2(ref_head));
    const auto sum = f64(u.at("model.embed_tokens.weight")) + f64(head);
    EXPECT_LE(l2(f64(t.at("model.embed_tokens.weight")) - sum), tied_tol * l2(sum));
    if (keep) {
      kept_untied = u;
    } else {
      // Same bf16 d(logits) either way, summed over chunks in float32 on this path.
      EXPECT_LE(l2(f64(head) - f64(kept_untied.at("lm_head.weight"))), 1e-2 * l2(ref_head));
    }
  }
}

}  // namespace posttrain::core::testing
