// Target log-probs through the LM head (see logprobs.h). Two ways to run the head under autograd:
// - kept: one [M, V] matmul in forward whose logits stay for backward, where they are turned
//   into d(logits) in place chunk by chunk and fed to two big matmuls. Fastest; costs M*V
//   elements of the compute dtype, so it is used when that fits keep_logits_bytes.
// - recomputed: forward and backward both walk chunks of `chunk` tokens and backward recomputes
//   each chunk's logits, so memory stays at one chunk (one extra head matmul of compute).
// Without a graph (scoring, reference log-probs) only the chunked forward runs.
// Under autocast the rows and the head weight are cast to the autocast dtype first, so every
// head matmul, forward and backward, runs in bf16 with float32 softmax maths.
#include "core/logprobs.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/autograd.h>

#include "common/error.h"
#include "kernels/logprob_gather.h"
#include "kernels/logprob_rows.h"

namespace posttrain::core {
namespace {

// rows [M, H], weight [V, H], targets [M] (all valid) -> [M] float32, chunk by chunk.
at::Tensor chunked_forward(const at::Tensor& rows, const at::Tensor& weight,
                           const at::Tensor& targets, int64_t chunk) {
  const int64_t m = rows.size(0);
  auto out = at::empty({m}, rows.options().dtype(at::kFloat));
  for (int64_t s = 0; s < m; s += chunk) {
    const int64_t n = std::min(chunk, m - s);
    const auto logits = at::linear(rows.narrow(0, s, n), weight);  // [n, V]
    out.narrow(0, s, n).copy_(
        kernels::logprob_gather(logits, targets.narrow(0, s, n), /*check_targets=*/false));
  }
  return out;
}

struct RecomputedHeadLogprob : torch::autograd::Function<RecomputedHeadLogprob> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& rows,
                            const at::Tensor& weight, const at::Tensor& targets, int64_t chunk) {
    ctx->save_for_backward({rows, weight, targets});
    ctx->saved_data["chunk"] = chunk;
    at::NoGradGuard no_grad;
    return chunked_forward(rows, weight, targets, chunk);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& rows = saved[0];     // [M, H]
    const auto& weight = saved[1];   // [V, H]
    const auto& targets = saved[2];  // [M]
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const bool want_rows = ctx->needs_input_grad(0), want_weight = ctx->needs_input_grad(1);
    const auto grad_out = grads[0].to(at::kFloat);  // [M]
    const int64_t m = rows.size(0);
    at::Tensor grad_rows = want_rows ? at::empty_like(rows) : at::Tensor();
    // Accumulated over chunks in float32 whatever the compute dtype.
    at::Tensor grad_weight =
        want_weight ? at::zeros(weight.sizes(), weight.options().dtype(at::kFloat)) : at::Tensor();
    for (int64_t s = 0; s < m; s += chunk) {
      const int64_t n = std::min(chunk, m - s);
      const auto r = rows.narrow(0, s, n);
      const auto logits = at::linear(r, weight);  // [n, V]
      const auto dlogits =
          kernels::logprob_gather_backward(logits, targets.narrow(0, s, n),
                                           grad_out.narrow(0, s, n), /*check_targets=*/false)
              .to(weight.scalar_type());  // [n, V]
      if (want_rows) grad_rows.narrow(0, s, n).copy_(at::mm(dlogits, weight));
      if (want_weight) grad_weight.add_(at::mm(dlogits.t(), r));
    }
    if (want_weight) grad_weight = grad_weight.to(weight.scalar_type());
    return {grad_rows, grad_weight, at::Tensor(), at::Tensor()};
  }
};

struct KeptHeadLogprob : torch::autograd::Function<KeptHeadLogprob> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& rows,
                            const at::Tensor& weight, const at::Tensor& targets, int64_t chunk) {
    at::NoGradGuard no_grad;
    const auto logits = at::linear(rows, weight);  // [M, V] compute dtype
    auto [lse, out] = kernels::logprob_rows_forward(logits, targets, chunk);  // [M], [M]
    ctx->save_for_backward({rows, weight, targets});
    // Not through save_for_backward: backward overwrites these logits with their gradient.
    ctx->saved_data["logits"] = logits;
    ctx->saved_data["lse"] = lse;
    ctx->saved_data["chunk"] = chunk;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& rows = saved[0];     // [M, H]
    const auto& weight = saved[1];   // [V, H]
    const auto& targets = saved[2];  // [M]
    auto dlogits = ctx->saved_data["logits"].toTensor();  // [M, V], becomes d(logits)
    const auto lse = ctx->saved_data["lse"].toTensor();   // [M]
    ctx->saved_data.erase("logits");
    kernels::logprob_rows_backward_(dlogits, targets, lse, grads[0],
                                    ctx->saved_data["chunk"].toInt());
    at::Tensor grad_rows = ctx->needs_input_grad(0) ? at::mm(dlogits, weight) : at::Tensor();
    at::Tensor grad_weight = ctx->needs_input_grad(1) ? at::mm(dlogits.t(), rows) : at::Tensor();
    return {grad_rows, grad_weight, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor target_logprobs(LlamaModelImpl& model, const at::Tensor& hidden,
                           const at::Tensor& targets, int64_t chunk_tokens,
                           int64_t keep_logits_bytes) {
  auto weight = model.lm_head_weight();  // [V, H]; throws on a reward model
  if (hidden.dim() != 3 || targets.dim() != 2 || hidden.size(0) != targets.size(0) ||
      hidden.size(1) != targets.size(1) || hidden.size(2) != weight.size(1)) {
    throw UsageError("target_logprobs: hidden must be [B, T, H] and targets [B, T]");
  }
  if (chunk_tokens <= 0) throw UsageError("target_logprobs: chunk_tokens must be positive");
  const int64_t B = targets.size(0), T = targets.size(1), V = weight.size(0);
  const auto flat_targets = targets.to(hidden.device()).to(at::kLong).reshape({-1});  // [B*T]
  const auto idx = flat_targets.ne(kIgnoreTarget).nonzero().squeeze(1);               // [M]
  auto rows = hidden.reshape({B * T, hidden.size(2)}).index_select(0, idx);           // [M, H]
  const auto picked = flat_targets.index_select(0, idx);                              // [M]
  const int64_t m = picked.size(0);
  if (m > 0) {
    // One read-back for the whole batch (the per-chunk kernels skip their own check).
    const auto range = at::stack({picked.min(), picked.max()}).to(at::kCPU);
    const int64_t lo = range[0].item<int64_t>(), hi = range[1].item<int64_t>();
    if (lo < 0 || hi >= V) {
      throw UsageError("target_logprobs: target id " + std::to_string(lo < 0 ? lo : hi) +
                       " outside the vocabulary [0, " + std::to_string(V) + ")");
    }
  }
  const auto dev = hidden.device().type();
  if (at::autocast::is_autocast_enabled(dev)) {
    const auto low = at::autocast::get_autocast_dtype(dev);
    rows = rows.to(low);
    weight = weight.to(low);
  }
  at::Tensor lp;  // [M] float32
  const bool graph = at::GradMode::is_enabled() && (rows.requires_grad() || weight.requires_grad());
  if (!graph) {
    at::NoGradGuard no_grad;
    lp = chunked_forward(rows, weight, picked, chunk_tokens);
  } else if (m * V * static_cast<int64_t>(rows.element_size()) <= keep_logits_bytes) {
    lp = KeptHeadLogprob::apply(rows, weight, picked, chunk_tokens);
  } else {
    lp = RecomputedHeadLogprob::apply(rows, weight, picked, chunk_tokens);
  }
  auto out = at::zeros({B * T}, lp.options());
  return out.index_put({idx}, lp).view({B, T});
}

at::Tensor token_logprobs(LlamaModelImpl& model, const ForwardInputs& in, int64_t chunk_tokens) {
  const auto hidden = model.hidden_states(in);  // [B, T, H]
  const int64_t B = hidden.size(0), T = hidden.size(1);
  if (T < 2) return at::zeros({B, 0}, hidden.options().dtype(at::kFloat));
  const auto dev = hidden.device();
  auto targets = in.input_ids.to(dev).narrow(1, 1, T - 1).clone();  // [B, T-1]
  if (in.attention_mask.defined()) {
    const auto real = in.attention_mask.to(dev).to(at::kBool).narrow(1, 1, T - 1);
    targets.masked_fill_(~real, kIgnoreTarget);
  }
  if (in.document_ids.defined()) {
    const auto doc = in.document_ids.to(dev);
    targets.masked_fill_(doc.narrow(1, 1, T - 1).ne(doc.narrow(1, 0, T - 1)), kIgnoreTarget);
  }
  return target_logprobs(model, hidden.narrow(1, 0, T - 1), targets, chunk_tokens);
}

}  // namespace posttrain::core
