// Target log-probs through the LM head (see logprobs.h). Two ways to run the head under autograd:
// - kept: one [M, V] matmul in forward whose logits stay for backward, where they are turned
//   into d(logits) in place chunk by chunk and fed to two big matmuls. Fastest; costs M*V
//   elements of the compute dtype, so it is used when that fits keep_logits_bytes.
// - recomputed: forward and backward both walk chunks of `chunk` tokens and backward recomputes
//   each chunk's logits, so memory stays at one chunk (one extra head matmul of compute).
// Without a graph (scoring, reference log-probs) only the chunked forward runs.
// Under autocast the head runs in the autocast dtype: both Functions take the rows and the
// (float32 master) head weight as they are, cast each once inside, and save only the bf16 copies;
// every head matmul, forward and backward, runs in bf16 with float32 softmax maths, and the
// weight's gradient is written in float32 by the GEMM itself (mm_as, core/model/linear.h:
// float32 accumulation, no bf16 [V, H] gradient and no separate cast pass), summed over chunks
// in float32 on the recomputed path.
#include "core/logprobs.h"
#include "core/target_hits.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/DispatchKeySet.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/autograd.h>

#include "common/error.h"
#include "core/model/autocast_scope.h"
#include "core/model/linear.h"
#include "kernels/logprob_gather.h"
#include "kernels/logprob_rows.h"

namespace posttrain::core {
namespace {

// Whether each target is its row's argmax: logits [n, V], targets [n] -> [n] bool (the first
// maximum wins a tie, as torch.argmax).
at::Tensor argmax_hits(const at::Tensor& logits, const at::Tensor& targets) {
  return logits.argmax(1).eq(targets);
}

// rows [M, H], weight [V, H] (one dtype), targets [M] (all valid) -> [M] float32, chunk by chunk.
// `hits` (may be null) receives argmax_hits of every row, [M] bool.
at::Tensor chunked_forward(const at::Tensor& rows, const at::Tensor& weight,
                           const at::Tensor& targets, int64_t chunk, at::Tensor* hits = nullptr) {
  const int64_t m = rows.size(0);
  auto out = at::empty({m}, rows.options().dtype(at::kFloat));
  if (hits) *hits = at::empty({m}, rows.options().dtype(at::kBool));
  for (int64_t s = 0; s < m; s += chunk) {
    const int64_t n = std::min(chunk, m - s);
    const auto logits = at::mm(rows.narrow(0, s, n), weight.t());  // [n, V]
    out.narrow(0, s, n).copy_(
        kernels::logprob_gather(logits, targets.narrow(0, s, n), /*check_targets=*/false));
    if (hits) hits->narrow(0, s, n).copy_(argmax_hits(logits, targets.narrow(0, s, n)));
  }
  return out;
}

// Both head Functions: rows [M, H] and weight [V, H] in any float dtypes, computed in `dtype`;
// gradients come back in the inputs' own dtypes. They run with autocast excluded (the operands
// are cast already). The inputs' dtypes, for backward.
void save_dtypes(torch::autograd::AutogradContext* ctx, const at::Tensor& rows,
                 const at::Tensor& weight) {
  ctx->saved_data["rows_dtype"] = static_cast<int64_t>(rows.scalar_type());
  ctx->saved_data["weight_dtype"] = static_cast<int64_t>(weight.scalar_type());
}
at::ScalarType saved_dtype(torch::autograd::AutogradContext* ctx, const char* key) {
  return static_cast<at::ScalarType>(ctx->saved_data[key].toInt());
}

// Both Functions' forward also fills `hits` ([M] bool, argmax_hits) when it is not null.
struct RecomputedHeadLogprob : torch::autograd::Function<RecomputedHeadLogprob> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& rows,
                            const at::Tensor& weight, const at::Tensor& targets, int64_t chunk,
                            at::ScalarType dtype, at::Tensor* hits) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const auto r = rows.to(dtype), w = weight.to(dtype);  // [M, H], [V, H]
    ctx->save_for_backward({r, w, targets});
    ctx->saved_data["chunk"] = chunk;
    save_dtypes(ctx, rows, weight);
    return chunked_forward(r, w, targets, chunk, hits);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const auto saved = ctx->get_saved_variables();
    const auto& rows = saved[0];     // [M, H] compute dtype
    const auto& weight = saved[1];   // [V, H] compute dtype
    const auto& targets = saved[2];  // [M]
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const bool want_rows = ctx->needs_input_grad(0), want_weight = ctx->needs_input_grad(1);
    const auto grad_out = grads[0].to(at::kFloat);  // [M]
    const int64_t m = rows.size(0);
    at::Tensor grad_rows =
        want_rows ? at::empty(rows.sizes(), rows.options().dtype(saved_dtype(ctx, "rows_dtype")))
                  : at::Tensor();
    at::Tensor grad_weight;  // [V, H] float32, summed over chunks by the GEMMs
    for (int64_t s = 0; s < m; s += chunk) {
      const int64_t n = std::min(chunk, m - s);
      const auto r = rows.narrow(0, s, n);
      const auto logits = at::mm(r, weight.t());  // [n, V]
      const auto dlogits =
          kernels::logprob_gather_backward(logits, targets.narrow(0, s, n),
                                           grad_out.narrow(0, s, n), /*check_targets=*/false)
              .to(weight.scalar_type());  // [n, V]
      if (want_rows) grad_rows.narrow(0, s, n).copy_(at::mm(dlogits, weight));
      if (!want_weight) continue;
      if (grad_weight.defined()) {
        addmm_as_(grad_weight, dlogits.t(), r);
      } else {
        grad_weight = mm_as(dlogits.t(), r, at::kFloat);
      }
    }
    if (want_weight) {
      const auto weight_dtype = saved_dtype(ctx, "weight_dtype");
      grad_weight = m > 0 ? grad_weight.to(weight_dtype)
                          : at::zeros(weight.sizes(), weight.options().dtype(weight_dtype));
    }
    return {grad_rows, grad_weight, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

struct KeptHeadLogprob : torch::autograd::Function<KeptHeadLogprob> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& rows,
                            const at::Tensor& weight, const at::Tensor& targets, int64_t chunk,
                            at::ScalarType dtype, at::Tensor* hits) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const auto r = rows.to(dtype), w = weight.to(dtype);                      // [M, H], [V, H]
    const auto logits = at::mm(r, w.t());                                     // [M, V]
    if (hits) *hits = argmax_hits(logits, targets);
    auto [lse, out] = kernels::logprob_rows_forward(logits, targets, chunk);  // [M], [M]
    ctx->save_for_backward({r, w, targets});
    save_dtypes(ctx, rows, weight);
    // Not through save_for_backward: backward overwrites these logits with their gradient.
    ctx->saved_data["logits"] = logits;
    ctx->saved_data["lse"] = lse;
    ctx->saved_data["chunk"] = chunk;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const auto saved = ctx->get_saved_variables();
    const auto& rows = saved[0];                          // [M, H] compute dtype
    const auto& weight = saved[1];                        // [V, H] compute dtype
    const auto& targets = saved[2];                       // [M]
    auto dlogits = ctx->saved_data["logits"].toTensor();  // [M, V], becomes d(logits)
    const auto lse = ctx->saved_data["lse"].toTensor();   // [M]
    ctx->saved_data.erase("logits");
    kernels::logprob_rows_backward_(dlogits, targets, lse, grads[0],
                                    ctx->saved_data["chunk"].toInt());
    // Straight into the inputs' dtypes: a float32 master weight's gradient is accumulated and
    // written in float32 by the GEMM (mm_as), never rounded to bf16.
    at::Tensor grad_rows = ctx->needs_input_grad(0)
                               ? mm_as(dlogits, weight, saved_dtype(ctx, "rows_dtype"))
                               : at::Tensor();
    at::Tensor grad_weight = ctx->needs_input_grad(1)
                                 ? mm_as(dlogits.t(), rows, saved_dtype(ctx, "weight_dtype"))
                                 : at::Tensor();
    return {grad_rows, grad_weight, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor target_logprobs(LlamaModelImpl& model, const at::Tensor& hidden,
                           const at::Tensor& targets, int64_t chunk_tokens,
                           int64_t keep_logits_bytes) {
  return target_logprobs_and_hits(model, hidden, targets, nullptr, chunk_tokens,
                                  keep_logits_bytes);
}

at::Tensor target_logprobs_and_hits(LlamaModelImpl& model, const at::Tensor& hidden,
                                    const at::Tensor& targets, at::Tensor* hits,
                                    int64_t chunk_tokens, int64_t keep_logits_bytes) {
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
  // The head's compute dtype: autocast's on this device, else the weight's.
  const auto dev = hidden.device().type();
  const auto dtype = active_autocast_dtype(dev).value_or(weight.scalar_type());
  at::Tensor lp;        // [M] float32
  at::Tensor row_hits;  // [M] bool, when asked
  at::Tensor* hits_out = hits ? &row_hits : nullptr;
  const bool graph = at::GradMode::is_enabled() && (rows.requires_grad() || weight.requires_grad());
  if (!graph) {
    at::NoGradGuard no_grad;
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    lp = chunked_forward(rows.to(dtype), weight.to(dtype), picked, chunk_tokens, hits_out);
  } else if (m * V * static_cast<int64_t>(c10::elementSize(dtype)) <= keep_logits_bytes) {
    lp = KeptHeadLogprob::apply(rows, weight, picked, chunk_tokens, dtype, hits_out);
  } else {
    lp = RecomputedHeadLogprob::apply(rows, weight, picked, chunk_tokens, dtype, hits_out);
  }
  if (hits) {
    *hits = at::zeros({B * T}, row_hits.options());
    if (m > 0) hits->index_put_({idx}, row_hits);
    *hits = hits->view({B, T});
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
  if (in.segment_ids.defined()) {
    // The token after a segment's last is another segment's first (or another document's):
    // not what the segment predicts. Only the prefix's last token predicts the next segment's
    // first (the last prompt token each segment repeats).
    const auto seg = in.segment_ids.to(dev);
    const auto cur = seg.narrow(1, 0, T - 1), next = seg.narrow(1, 1, T - 1);
    targets.masked_fill_(cur.ne(next).logical_and(cur.ne(0)), kIgnoreTarget);
  }
  return target_logprobs(model, hidden.narrow(1, 0, T - 1), targets, chunk_tokens);
}

at::Tensor segment_sums(const at::Tensor& values, const at::Tensor& segment_index,
                        int64_t num_segments) {
  if (values.dim() != 2 || segment_index.sizes() != values.sizes()) {
    throw UsageError("segment_sums: values and segment_index must both be [B, T]");
  }
  const auto idx = segment_index.to(values.device()).to(at::kLong).reshape({-1});  // [B*T]
  if (idx.numel() > 0 && idx.max().item<int64_t>() >= num_segments) {
    throw UsageError("segment_sums: a segment index is >= num_segments");
  }
  const auto keep = idx.ge(0).nonzero().squeeze(1);  // [M]
  const auto v = values.to(at::kFloat).reshape({-1}).index_select(0, keep);  // [M]
  return at::zeros({num_segments}, v.options()).index_add(0, idx.index_select(0, keep), v);
}

}  // namespace posttrain::core
