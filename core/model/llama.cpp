// Llama decoder in LibTorch. Parameters live in small holder modules registered under the
// Hugging Face names ("model.layers.3.mlp.up_proj.weight"), so named_parameters() is the HF
// state dict. The math follows transformers' LlamaForCausalLM: RMSNorm computed in float32 and
// cast back before the weight multiply, RoPE cos/sin computed in float32 then cast to the
// activation dtype, rotate-half convention, SwiGLU MLP. Attention on CPU float32 is our causal
// kernel (kernels/causal_attention.h: documents as per-token start indices, shared-prefix
// segments as per-token spans, kv heads shared in place); elsewhere
// at::scaled_dot_product_attention (is_causal when no mask is needed, else a boolean
// [B, 1, T, T] mask that is causal, block-diagonal over documents, confined to segments and
// blind to padding keys).
#include "core/model/llama.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/autograd.h>
#include <torch/nn/modules/container/modulelist.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include "common/error.h"
#include "core/model/attention_spans.h"
#include "core/model/autocast_scope.h"
#include "core/model/linear.h"
#include "kernels/causal_attention.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"

namespace posttrain::core {
namespace {

// A module holding one parameter called "weight" (a Linear without bias, a norm, an embedding).
class WeightImpl : public torch::nn::Module {
 public:
  WeightImpl(at::IntArrayRef shape, const at::TensorOptions& options) {
    weight = register_parameter("weight", at::empty(shape, options));
  }
  at::Tensor weight;
};
TORCH_MODULE(Weight);

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(const LlamaConfig& c, const at::TensorOptions& o) {
    const int64_t hd = c.resolved_head_dim(), h = c.hidden_size;
    q_proj = register_module("q_proj", Weight(at::IntArrayRef{c.num_attention_heads * hd, h}, o));
    k_proj = register_module("k_proj", Weight(at::IntArrayRef{c.num_key_value_heads * hd, h}, o));
    v_proj = register_module("v_proj", Weight(at::IntArrayRef{c.num_key_value_heads * hd, h}, o));
    o_proj = register_module("o_proj", Weight(at::IntArrayRef{h, c.num_attention_heads * hd}, o));
  }
  Weight q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
};
TORCH_MODULE(Attention);

struct MlpImpl : torch::nn::Module {
  MlpImpl(const LlamaConfig& c, const at::TensorOptions& o) {
    const int64_t h = c.hidden_size, m = c.intermediate_size;
    gate_proj = register_module("gate_proj", Weight(at::IntArrayRef{m, h}, o));
    up_proj = register_module("up_proj", Weight(at::IntArrayRef{m, h}, o));
    down_proj = register_module("down_proj", Weight(at::IntArrayRef{h, m}, o));
  }
  Weight gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

struct DecoderLayerImpl : torch::nn::Module {
  DecoderLayerImpl(const LlamaConfig& c, const at::TensorOptions& o) {
    self_attn = register_module("self_attn", Attention(c, o));
    mlp = register_module("mlp", Mlp(c, o));
    input_layernorm = register_module("input_layernorm", Weight(at::IntArrayRef{c.hidden_size}, o));
    post_attention_layernorm =
        register_module("post_attention_layernorm", Weight(at::IntArrayRef{c.hidden_size}, o));
  }
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
  Weight input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

struct BackboneImpl : torch::nn::Module {
  BackboneImpl(const LlamaConfig& c, const at::TensorOptions& o) {
    embed_tokens =
        register_module("embed_tokens", Weight(at::IntArrayRef{c.vocab_size, c.hidden_size}, o));
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      list.push_back(DecoderLayer(c, o));
      layers->push_back(list.back());
    }
    norm = register_module("norm", Weight(at::IntArrayRef{c.hidden_size}, o));
  }
  Weight embed_tokens{nullptr}, norm{nullptr};
  torch::nn::ModuleList layers{nullptr};
  std::vector<DecoderLayer> list;  // the same layers, typed
};
TORCH_MODULE(Backbone);

// Inverse RoPE frequencies [hd/2] float32 on CPU, with Llama 3.1 scaling when configured.
at::Tensor inverse_frequencies(const LlamaConfig& c) {
  const int64_t dim = c.resolved_head_dim();
  const auto exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  auto inv = 1.0 / at::pow(c.rope_theta, exponents);  // [dim/2]
  const auto& s = c.rope_scaling;
  if (s.rope_type == "llama3") {
    const double old_len = static_cast<double>(s.original_max_position_embeddings);
    const double low_wavelen = old_len / s.low_freq_factor;
    const double high_wavelen = old_len / s.high_freq_factor;
    const auto wavelen = 2 * M_PI / inv;
    auto scaled = at::where(wavelen > low_wavelen, inv / s.factor, inv);
    const auto smooth =
        (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    const auto smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
    const auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    inv = at::where(medium, smoothed, scaled);
  }
  return inv.contiguous();
}

// Per-token positions when the caller gave none: 0..T-1, or restarting at each new document
// (the distance to the start of the token's run of equal document ids), or with segments what
// span_positions gives.
at::Tensor default_positions(const ForwardInputs& in, const KeySpans& spans) {
  if (spans.defined()) return span_positions(spans);
  const int64_t B = in.input_ids.size(0), T = in.input_ids.size(1);
  const auto opts = in.input_ids.options().dtype(at::kLong);
  auto pos = at::arange(T, opts).unsqueeze(0).expand({B, T});  // [B, T]
  if (!in.document_ids.defined() || T == 0) return pos.contiguous();
  return pos - kernels::run_starts(in.document_ids.to(opts.device()));
}

// Boolean attention mask [B, 1, T, T] (true = may attend), or undefined when plain causal
// attention is exact (no documents, no padding).
at::Tensor attention_mask_for(const ForwardInputs& in) {
  const int64_t T = in.input_ids.size(1);
  const bool has_padding =
      in.attention_mask.defined() && !in.attention_mask.to(at::kBool).all().item<bool>();
  if (!in.document_ids.defined() && !has_padding) return {};
  const auto dev = in.input_ids.device();
  auto m = at::ones({T, T}, at::TensorOptions().dtype(at::kBool).device(dev)).tril().unsqueeze(0);
  if (in.document_ids.defined()) {
    const auto doc = in.document_ids.to(dev);
    m = m.logical_and(doc.unsqueeze(2).eq(doc.unsqueeze(1)));  // [B, T, T]
  }
  if (has_padding) {
    m = m.logical_and(in.attention_mask.to(dev).to(at::kBool).unsqueeze(1));
    // Padding queries would see nothing (NaN rows); let every token see itself.
    m = m.logical_or(at::eye(T, at::TensorOptions().dtype(at::kBool).device(dev)).unsqueeze(0));
  }
  return m.unsqueeze(1);
}

// How attention is confined: a document start per token for our CPU kernel (undefined: plain
// causal; with segments also the prefix end and segment start), or for ATen's attention a dense
// mask (undefined: plain causal).
struct AttentionMasking {
  bool cpu_kernel = false;
  at::Tensor doc_start;   // [B, T] int64, with cpu_kernel
  at::Tensor prefix_end;  // [B, T] int64, with cpu_kernel and segments
  at::Tensor seg_start;   // [B, T] int64, with cpu_kernel and segments
  at::Tensor mask;        // [B, 1, T, T] bool, without
};

// Whether the attention mask marks padding that only trails (or no padding at all).
bool padding_trails(const at::Tensor& attention_mask) {
  if (!attention_mask.defined() || attention_mask.size(1) <= 1) return true;
  const int64_t T = attention_mask.size(1);
  const auto real = attention_mask.cpu().to(at::kBool);  // [B, T]
  return real.narrow(1, 1, T - 1).le(real.narrow(1, 0, T - 1)).all().item<bool>();
}

// Shared-prefix rows: the spans go to our kernel as they are (padding sees itself only) when
// padding trails, else into the dense mask.
AttentionMasking segment_masking(const ForwardInputs& in, const KeySpans& spans, bool kernel,
                                 at::Device dev) {
  if (kernel && padding_trails(in.attention_mask)) {
    return {true, spans.doc_start, spans.prefix_end, spans.seg_start, {}};
  }
  return {false, {}, {}, {}, span_mask(spans, in.attention_mask, dev)};
}

// Our CPU kernel for float32 outside autocast when the masking fits it: documents that are
// contiguous runs (what packing writes) and padding only at the end of rows (what collation
// writes). A padding token then starts a document of its own at itself, so it sees only itself,
// as the dense mask has it; real tokens never see the later padding. Anything else, the mask.
AttentionMasking attention_masking(const ForwardInputs& in, const KeySpans& spans,
                                   at::Device dev, at::ScalarType dtype) {
  const bool kernel = dev.is_cpu() && dtype == at::kFloat &&
                      !at::autocast::is_autocast_enabled(at::kCPU) &&
                      kernels::causal_attention_enabled();
  if (spans.defined()) return segment_masking(in, spans, kernel, dev);
  if (!kernel) return {false, {}, {}, {}, attention_mask_for(in)};
  const int64_t B = in.input_ids.size(0), T = in.input_ids.size(1);
  at::Tensor start;
  if (in.document_ids.defined()) {
    start = kernels::document_starts(in.document_ids.cpu());
    if (!start.defined()) return {false, {}, {}, {}, attention_mask_for(in)};
  }
  if (in.attention_mask.defined() && T > 1) {
    const auto real = in.attention_mask.cpu().to(at::kBool);  // [B, T]
    if (!real.all().item<bool>()) {
      const bool trailing =
          real.narrow(1, 1, T - 1).le(real.narrow(1, 0, T - 1)).all().item<bool>();
      if (!trailing) return {false, {}, {}, {}, attention_mask_for(in)};
      const auto pos = at::arange(T, at::kLong).unsqueeze(0).expand({B, T});  // [B, T]
      start = at::where(real, start.defined() ? start : at::zeros({B, T}, at::kLong), pos);
    }
  }
  return {true, start, {}, {}, {}};
}

struct Rope {
  at::Tensor cos, sin;  // [B, T, hd] in the activation dtype
};

at::Tensor attention_block(const AttentionImpl& a, const LlamaConfig& c, const at::Tensor& x,
                           const Rope& rope, const AttentionMasking& masking) {
  const int64_t B = x.size(0), T = x.size(1), hd = c.resolved_head_dim();
  const int64_t nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  // q, k, v from one GEMM against the stacked projections: column blocks of one [B, T, S]
  // result. RoPE in the projections' own layout [B, T, heads, hd], then the heads-first view.
  const auto qkv = linear_fused(x, {a.q_proj->weight, a.k_proj->weight, a.v_proj->weight});
  auto q = kernels::apply_rope(qkv[0].view({B, T, nh, hd}), rope.cos, rope.sin);  // [B,T,nh,hd]
  auto k = kernels::apply_rope(qkv[1].view({B, T, nkv, hd}), rope.cos, rope.sin);  // [B,T,nkv,hd]
  auto v = qkv[2].view({B, T, nkv, hd});                                          // [B,T,nkv,hd]
  if (masking.cpu_kernel) {
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    const auto out = masking.prefix_end.defined()
                         ? kernels::causal_attention(q, k, v, masking.doc_start,
                                                     masking.prefix_end, masking.seg_start, scale)
                         : kernels::causal_attention(q, k, v, masking.doc_start, scale);
    return core::linear(out.view({B, T, nh * hd}), a.o_proj->weight);
  }
  const auto& mask = masking.mask;
  q = q.transpose(1, 2);  // [B, nh, T, hd]
  k = k.transpose(1, 2);  // [B, nkv, T, hd]
  v = v.transpose(1, 2);  // [B, nkv, T, hd]
  // Without a mask the flash kernels (CUDA, and CPU's) read the shared kv heads themselves
  // (enable_gqa); otherwise each kv head is copied out to its nh / nkv query heads (expand is a
  // view, one copy on reshape), which the masked kernels need.
  const bool native_gqa = nkv != nh && (q.is_cuda() || q.is_cpu()) && !mask.defined();
  if (nkv != nh && !native_gqa) {
    k = k.unsqueeze(2).expand({B, nkv, nh / nkv, T, hd}).reshape({B, nh, T, hd});
    v = v.unsqueeze(2).expand({B, nkv, nh / nkv, T, hd}).reshape({B, nh, T, hd});
  }
  at::Tensor out;
  if (mask.defined()) {
    out = at::scaled_dot_product_attention(q, k, v, mask, 0.0, false);
  } else {
    out = at::scaled_dot_product_attention(q, k, v, {}, 0.0, true, std::nullopt, native_gqa);
  }
  out = out.transpose(1, 2).reshape({B, T, nh * hd});  // [B, T, nh*hd]
  return core::linear(out, a.o_proj->weight);
}

// SwiGLU MLP: down(silu(gate(x)) * up(x)). Gate and up share one cast of x but get their own
// contiguous outputs (kSeparate): the SwiGLU kernels would copy strided column blocks.
at::Tensor mlp_block(const MlpImpl& m, const at::Tensor& x) {
  const auto gate_up =
      linear_fused(x, {m.gate_proj->weight, m.up_proj->weight}, FusedLayout::kSeparate);
  return core::linear(kernels::swiglu(gate_up[0], gate_up[1]), m.down_proj->weight);
}

// The dtype the norms write: under autocast the autocast dtype, the value autocast's cast in
// each linear reading the norm would give (computed once, not once per linear); else the
// norm's own (nullopt).
std::optional<at::ScalarType> norm_dtype(const at::Tensor& x) {
  return active_autocast_dtype(x.device().type());
}

// Pre-norm residual layer from its input x and input_layernorm(x): h = x + attn(normed), then
// the output h + mlp(norm(h)) returned unsummed as {h, mlp}, so the next layer's input norm (or
// the final norm) fuses that add. The mid-layer add runs fused with its norm.
std::pair<at::Tensor, at::Tensor> layer_body(const DecoderLayerImpl& l, const LlamaConfig& c,
                                             const at::Tensor& x, const at::Tensor& normed,
                                             const Rope& rope, const AttentionMasking& masking) {
  const auto attn = attention_block(*l.self_attn, c, normed, rope, masking);
  const auto [h, n] = kernels::add_rms_norm(x, attn, l.post_attention_layernorm->weight,
                                            c.rms_norm_eps, norm_dtype(x));
  return {h, mlp_block(*l.mlp, n)};
}

// The layer's input norm on x = residual + branch (the previous layer's unsummed output;
// branch undefined for the first layer), fused with that add: {x, input_layernorm(x)}.
std::pair<at::Tensor, at::Tensor> layer_input(const DecoderLayerImpl& l, const LlamaConfig& c,
                                              const at::Tensor& residual,
                                              const at::Tensor& branch) {
  return kernels::add_rms_norm(residual, branch, l.input_layernorm->weight, c.rms_norm_eps,
                               norm_dtype(residual));
}

// Pre-norm residual layer: x = residual + branch, h = x + attn(norm(x)), returns
// {h, mlp(norm(h))} (the layer's output is their sum).
std::pair<at::Tensor, at::Tensor> layer_forward(const DecoderLayerImpl& l, const LlamaConfig& c,
                                                const at::Tensor& residual,
                                                const at::Tensor& branch, const Rope& rope,
                                                const AttentionMasking& masking) {
  const auto [x, normed] = layer_input(l, c, residual, branch);
  return layer_body(l, c, x, normed, rope, masking);
}

// Activation checkpointing: the forward keeps only the layer's input x (the sum of the pending
// residual and branch, which it computes fused with the input norm); backward recomputes the
// layer from x with autograd on and differentiates it. No randomness inside a layer, and the
// norm of x alone equals the fused add + norm bit for bit, so recomputation is exact.
struct LayerCall : torch::CustomClassHolder {
  const DecoderLayerImpl* layer;
  const LlamaConfig* config;
  Rope rope;
  AttentionMasking masking;
  // The forward's autocast state: the recomputation must run in the same precision (backward
  // runs outside the trainer's autocast scope), or it would redo bf16 work in float32.
  at::DeviceType device = at::kCPU;
  bool autocast = false;
  at::ScalarType autocast_dtype = at::kBFloat16;
};

struct CheckpointedLayer : torch::autograd::Function<CheckpointedLayer> {
  // residual, branch (nullopt before the first layer) -> {h, mlp} as layer_forward.
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const at::Tensor& residual,
                                                const std::optional<at::Tensor>& branch,
                                                const at::TensorList& params, c10::IValue call) {
    const auto* c = static_cast<LayerCall*>(call.toCapsule().get());
    ctx->saved_data["call"] = call;
    ctx->saved_data["has_branch"] = branch.has_value();
    ctx->saved_data["branch_type"] =
        static_cast<int64_t>(branch ? branch->scalar_type() : residual.scalar_type());
    at::NoGradGuard no_grad;
    const auto [x, normed] =
        layer_input(*c->layer, *c->config, residual, branch.value_or(at::Tensor()));
    ctx->save_for_backward({x});
    const auto [h, mlp] = layer_body(*c->layer, *c->config, x, normed, c->rope, c->masking);
    return {h, mlp};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto* c = static_cast<LayerCall*>(ctx->saved_data["call"].toCapsule().get());
    const auto x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    std::vector<at::Tensor> inputs{x};
    for (const auto& p : c->layer->parameters()) inputs.push_back(p);
    std::pair<at::Tensor, at::Tensor> out;
    {
      at::AutoGradMode grad_on(true);
      AutocastScope precision(c->device, c->autocast, c->autocast_dtype);
      const auto [x2, normed] = layer_input(*c->layer, *c->config, x, at::Tensor());
      out = layer_body(*c->layer, *c->config, x2, normed, c->rope, c->masking);
    }
    auto g = torch::autograd::grad({out.first, out.second}, inputs, {grads[0], grads[1]}, false,
                                   false, true);
    // Outputs: grads for the residual and the branch (both d x; none without a branch), one
    // per parameter, none for the capsule.
    const auto branch_type = static_cast<at::ScalarType>(ctx->saved_data["branch_type"].toInt());
    const bool has_branch = ctx->saved_data["has_branch"].toBool();
    const auto dx = g[0];
    g.insert(g.begin() + 1, has_branch && dx.defined() ? dx.to(branch_type) : at::Tensor());
    g.push_back(at::Tensor());
    return g;
  }
};

void check_inputs(const ForwardInputs& in, const LlamaConfig& c) {
  const auto& ids = in.input_ids;
  if (!ids.defined() || ids.dim() != 2 || ids.scalar_type() != at::kLong) {
    throw UsageError("model input_ids must be an int64 tensor [B, T]");
  }
  for (const auto* t :
       {&in.position_ids, &in.document_ids, &in.attention_mask, &in.segment_ids}) {
    if (t->defined() && t->sizes() != ids.sizes()) {
      throw UsageError(
          "position_ids/document_ids/attention_mask/segment_ids must have input_ids' shape "
          "[B, T]");
    }
  }
  if (ids.numel() > 0) {
    const auto lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
    if (lo < 0 || hi >= c.vocab_size) {
      throw UsageError("token id " + std::to_string(lo < 0 ? lo : hi) +
                       " outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
    }
  }
}

}  // namespace

struct LlamaModelImpl::Parts {
  Backbone model{nullptr};
  Weight lm_head{nullptr};  // untied causal LM only
  Weight score{nullptr};    // reward model only
  at::Tensor inv_freq;      // [hd/2] float32, CPU
};

LlamaModelImpl::LlamaModelImpl(const LlamaConfig& config, at::TensorOptions options,
                               bool random_init)
    : config_(config), parts_(std::make_shared<Parts>()) {
  if (config_.vocab_size <= 0 || config_.hidden_size <= 0 || config_.num_hidden_layers <= 0 ||
      config_.num_attention_heads <= 0 || config_.num_key_value_heads <= 0 ||
      config_.num_attention_heads % config_.num_key_value_heads != 0) {
    throw UsageError("invalid Llama config: sizes must be positive and kv heads divide heads");
  }
  parts_->model = register_module("model", Backbone(config_, options));
  if (config_.kind == ModelKind::kRewardModel) {
    parts_->score =
        register_module("score", Weight(at::IntArrayRef{1, config_.hidden_size}, options));
  } else if (!config_.tie_word_embeddings) {
    parts_->lm_head = register_module(
        "lm_head", Weight(at::IntArrayRef{config_.vocab_size, config_.hidden_size}, options));
  }
  parts_->inv_freq = inverse_frequencies(config_);
  if (random_init) reset_parameters();
}

void LlamaModelImpl::reset_parameters(std::optional<uint64_t> seed) {
  at::NoGradGuard no_grad;
  std::optional<at::Generator> gen;
  if (seed) gen = at::make_generator<at::CPUGeneratorImpl>(*seed);
  for (auto& item : named_parameters()) {
    auto& p = item.value();
    if (p.dim() == 1) {
      p.fill_(1.0);  // RMSNorm weights
      continue;
    }
    auto draw = at::empty(p.sizes(), at::kFloat);
    draw.normal_(0.0, config_.initializer_range, gen);
    p.copy_(draw);
  }
}

at::Tensor LlamaModelImpl::hidden_states(const ForwardInputs& in) {
  check_inputs(in, config_);
  const auto& c = config_;
  auto& model = *parts_->model;
  const auto& weight = model.embed_tokens->weight;
  const auto dtype = weight.scalar_type();
  const auto dev = weight.device();
  auto x = at::embedding(weight, in.input_ids.to(dev));  // [B, T, H]

  // RoPE tables in float32, then cast to the activation dtype as transformers does; under
  // autocast that is the autocast dtype, so q and k stay in bf16 through the rotation.
  const auto rope_dtype = active_autocast_dtype(dev.type()).value_or(dtype);
  // Shared-prefix rows: spans checked and computed once for the positions and every layer.
  const KeySpans spans = in.segment_ids.defined()
                             ? segment_spans(in.segment_ids, in.document_ids, in.attention_mask)
                             : KeySpans{};
  const auto pos =
      (in.position_ids.defined() ? in.position_ids : default_positions(in, spans))
          .to(dev)
          .to(at::kFloat);  // [B, T]
  const auto freqs = pos.unsqueeze(-1) * parts_->inv_freq.to(dev).view({1, 1, -1});  // [B,T,hd/2]
  const auto emb = at::cat({freqs, freqs}, -1);                                      // [B, T, hd]
  const Rope rope{emb.cos().to(rope_dtype), emb.sin().to(rope_dtype)};
  const auto masking = attention_masking(in, spans, dev, dtype);

  const bool checkpoint = activation_checkpointing_ && at::GradMode::is_enabled();
  // Each layer returns its output as residual x and branch (their sum unformed): the next
  // layer's input norm adds them fused with the norm.
  at::Tensor branch;
  for (const auto& layer : model.list) {
    if (checkpoint) {
      auto call = c10::make_intrusive<LayerCall>();
      call->layer = layer.get();
      call->config = &config_;
      call->rope = rope;
      call->masking = masking;
      call->device = dev.type();
      call->autocast = at::autocast::is_autocast_enabled(dev.type());
      call->autocast_dtype = at::autocast::get_autocast_dtype(dev.type());
      const auto params = layer->parameters();
      const auto out = CheckpointedLayer::apply(
          x, branch.defined() ? std::optional<at::Tensor>(branch) : std::nullopt,
          at::TensorList(params), c10::IValue::make_capsule(call));
      x = out[0];
      branch = out[1];
    } else {
      std::tie(x, branch) = layer_forward(*layer, c, x, branch, rope, masking);
    }
  }
  // The last layer's output add, fused with the final norm.
  return kernels::add_rms_norm(x, branch, model.norm->weight, c.rms_norm_eps, norm_dtype(x))
      .second;
}

at::Tensor LlamaModelImpl::lm_head_weight() const {
  if (config_.kind == ModelKind::kRewardModel) {
    throw UsageError("a reward model has no language-model head");
  }
  return parts_->lm_head ? parts_->lm_head->weight : parts_->model->embed_tokens->weight;
}

at::Tensor LlamaModelImpl::score_weight() const {
  if (config_.kind != ModelKind::kRewardModel) throw UsageError("not a reward model");
  return parts_->score->weight;
}

at::Tensor LlamaModelImpl::lm_logits(const at::Tensor& hidden) {
  return at::linear(hidden, lm_head_weight());
}

at::Tensor LlamaModelImpl::token_rewards(const ForwardInputs& in) {
  if (config_.kind != ModelKind::kRewardModel) {
    throw UsageError("rewards need a reward model (LlamaForSequenceClassification)");
  }
  const auto hidden = hidden_states(in);                                    // [B, T, H]
  return core::linear(hidden, parts_->score->weight).squeeze(-1).to(at::kFloat);  // [B, T]
}

at::Tensor LlamaModelImpl::rewards(const ForwardInputs& in) {
  const auto scores = token_rewards(in);  // [B, T]
  const int64_t T = in.input_ids.size(1);
  const auto dev = scores.device();
  const auto idx = at::arange(T, at::TensorOptions().dtype(at::kLong).device(dev));
  // Last index whose token is real: by attention_mask, else by token != pad_token_id.
  const auto real = in.attention_mask.defined()
                        ? in.attention_mask.to(dev).to(at::kBool)
                        : in.input_ids.to(dev).ne(config_.pad_token_id.value_or(-1));
  const auto last = (idx.unsqueeze(0) * real.to(at::kLong)).argmax(1);  // [B]
  return scores.gather(1, last.unsqueeze(1)).squeeze(1);
}

at::Tensor LlamaModelImpl::rewards_at(const ForwardInputs& in, const at::Tensor& last) {
  const int64_t T = in.input_ids.size(1);
  if (!last.defined() || last.dim() != 2 || last.size(0) != in.input_ids.size(0)) {
    throw UsageError("rewards_at: token indices must be [B, K]");
  }
  const auto idx = last.to(at::kLong);
  if (idx.numel() > 0 && (idx.min().item<int64_t>() < -1 || idx.max().item<int64_t>() >= T)) {
    throw UsageError("rewards_at: token indices must lie in [-1, T)");
  }
  const auto scores = token_rewards(in);  // [B, T]
  const auto i = idx.to(scores.device());
  const auto picked = scores.gather(1, i.clamp_min(0));  // [B, K]
  return picked.masked_fill(i.lt(0), 0.0);
}

at::Tensor LlamaModelImpl::segment_rewards(const ForwardInputs& in) {
  if (!in.segment_ids.defined()) throw UsageError("segment_rewards: no segment_ids given");
  return rewards_at(in, segment_last_tokens(in.segment_ids, in.document_ids, in.attention_mask));
}

at::Tensor LlamaModelImpl::forward(const ForwardInputs& in) {
  if (config_.kind == ModelKind::kRewardModel) return rewards(in);
  return lm_logits(hidden_states(in));
}

at::Tensor segment_last_tokens(const at::Tensor& segment_ids, const at::Tensor& document_ids,
                               const at::Tensor& attention_mask) {
  if (!segment_ids.defined() || segment_ids.dim() != 2) {
    throw UsageError("segment_last_tokens: segment_ids must be [B, T]");
  }
  const int64_t B = segment_ids.size(0), T = segment_ids.size(1);
  const auto seg = segment_ids.cpu().to(at::kLong).contiguous();
  const auto doc = document_ids.defined() ? document_ids.cpu().to(at::kLong).contiguous()
                                          : at::zeros({B, T}, at::kLong);
  const auto real = attention_mask.defined()
                        ? attention_mask.cpu().to(at::kLong).contiguous()
                        : at::ones({B, T}, at::kLong);
  const int64_t *s = seg.data_ptr<int64_t>(), *d = doc.data_ptr<int64_t>(),
                *r = real.data_ptr<int64_t>();
  // A token ends its segment when it is a real segment token and the next token is not a real
  // token of the same segment and document.
  std::vector<std::vector<int64_t>> ends(B);
  size_t K = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t i = b * T + t;
      if (!r[i] || s[i] < 1) continue;
      const bool last = t + 1 == T || !r[i + 1] || s[i + 1] != s[i] || d[i + 1] != d[i];
      if (last) ends[b].push_back(t);
    }
    K = std::max(K, ends[b].size());
  }
  auto out = at::full({B, static_cast<int64_t>(K)}, -1, at::kLong);  // [B, K]
  auto a = out.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b) {
    for (size_t k = 0; k < ends[b].size(); ++k) a[b][k] = ends[b][k];
  }
  return out.to(segment_ids.device());
}

}  // namespace posttrain::core
