// Chunked target log-probs (see logprobs.h). The head matmul and log-softmax run one chunk of
// tokens at a time through kernels::logprob_gather; a custom autograd Function recomputes each
// chunk's logits in backward, so neither direction holds more than [chunk, vocab] floats.
#include "core/logprobs.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "common/error.h"
#include "kernels/logprob_gather.h"

namespace posttrain::core {
namespace {

// rows [M, H], weight [V, H], targets [M] (all valid) -> [M] float32 log-probs.
struct ChunkedHeadLogprob : torch::autograd::Function<ChunkedHeadLogprob> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& rows,
                            const at::Tensor& weight, const at::Tensor& targets, int64_t chunk) {
    ctx->save_for_backward({rows, weight, targets});
    ctx->saved_data["chunk"] = chunk;
    at::NoGradGuard no_grad;
    const int64_t m = rows.size(0);
    auto out = at::empty({m}, rows.options().dtype(at::kFloat));
    for (int64_t s = 0; s < m; s += chunk) {
      const int64_t n = std::min(chunk, m - s);
      const auto logits = at::linear(rows.narrow(0, s, n), weight);  // [n, V]
      out.narrow(0, s, n).copy_(kernels::logprob_gather(logits, targets.narrow(0, s, n)));
    }
    return out;
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
    at::Tensor grad_weight =
        want_weight ? at::zeros(weight.sizes(), weight.options().dtype(at::kFloat)) : at::Tensor();
    for (int64_t s = 0; s < m; s += chunk) {
      const int64_t n = std::min(chunk, m - s);
      const auto r = rows.narrow(0, s, n);
      const auto logits = at::linear(r, weight);  // [n, V]
      const auto dlogits = kernels::logprob_gather_backward(logits, targets.narrow(0, s, n),
                                                            grad_out.narrow(0, s, n));  // [n, V]
      if (want_rows)
        grad_rows.narrow(0, s, n).copy_(at::mm(dlogits.to(weight.scalar_type()), weight));
      if (want_weight) grad_weight.addmm_(dlogits.t(), r.to(at::kFloat));
    }
    if (want_weight) grad_weight = grad_weight.to(weight.scalar_type());
    return {grad_rows, grad_weight, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor target_logprobs(LlamaModelImpl& model, const at::Tensor& hidden,
                           const at::Tensor& targets, int64_t chunk_tokens) {
  const auto weight = model.lm_head_weight();  // [V, H]; throws on a reward model
  if (hidden.dim() != 3 || targets.dim() != 2 || hidden.size(0) != targets.size(0) ||
      hidden.size(1) != targets.size(1) || hidden.size(2) != weight.size(1)) {
    throw UsageError("target_logprobs: hidden must be [B, T, H] and targets [B, T]");
  }
  if (chunk_tokens <= 0) throw UsageError("target_logprobs: chunk_tokens must be positive");
  const int64_t B = targets.size(0), T = targets.size(1);
  const auto flat_targets = targets.to(hidden.device()).to(at::kLong).reshape({-1});  // [B*T]
  const auto idx = flat_targets.ne(kIgnoreTarget).nonzero().squeeze(1);               // [M]
  const auto rows = hidden.reshape({B * T, hidden.size(2)}).index_select(0, idx);     // [M, H]
  const auto picked = flat_targets.index_select(0, idx);                              // [M]
  const auto lp = ChunkedHeadLogprob::apply(rows, weight, picked, chunk_tokens);      // [M]
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
