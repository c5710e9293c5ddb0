#include "core/generate/paged_decoder.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>
#include <string>

#include "common/error.h"
#include "core/model/linear.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"

namespace posttrain::core::generate {
namespace {

at::Tensor long_tensor(const std::vector<int64_t>& v, at::Device dev) {
  return at::tensor(v, at::kLong).to(dev);
}

}  // namespace

PagedDecoder::PagedDecoder(LlamaModelImpl& model) : config_(model.config()) {
  if (model.is_reward_model()) throw UsageError("generation needs a causal language model");
  std::map<std::string, at::Tensor> w;
  for (const auto& item : model.named_parameters()) w[item.key()] = item.value().detach();
  auto get = [&](const std::string& name) {
    auto it = w.find(name);
    if (it == w.end()) throw UsageError("model has no parameter " + name);
    return it->second;
  };
  embed_ = get("model.embed_tokens.weight");
  final_norm_ = get("model.norm.weight");
  lm_head_ = model.lm_head_weight().detach();
  inv_freq_ = model.rope_inverse_frequencies().to(embed_.device());
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    layers_.push_back({get(p + "self_attn.q_proj.weight"), get(p + "self_attn.k_proj.weight"),
                       get(p + "self_attn.v_proj.weight"), get(p + "self_attn.o_proj.weight"),
                       get(p + "mlp.gate_proj.weight"), get(p + "mlp.up_proj.weight"),
                       get(p + "mlp.down_proj.weight"), get(p + "input_layernorm.weight"),
                       get(p + "post_attention_layernorm.weight")});
  }
}

at::Tensor PagedDecoder::step(const StepInputs& in, KvCache& cache) {
  const auto& c = config_;
  const auto dev = embed_.device();
  const int64_t N = static_cast<int64_t>(in.token_ids.size());
  const int64_t hd = c.resolved_head_dim(), nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const double eps = c.rms_norm_eps;
  const AttentionPlan plan(in.runs, cache.shape().page_size, dev, embed_.scalar_type());
  const auto slots = long_tensor(in.slots, dev);  // [N]

  // RoPE tables as the training forward builds them: float32 angles, cast to the weights' dtype.
  const auto pos = long_tensor(in.positions, dev).to(at::kFloat);  // [N]
  const auto freqs = pos.unsqueeze(-1) * inv_freq_.unsqueeze(0);   // [N, hd/2]
  const auto emb = at::cat({freqs, freqs}, -1).unsqueeze(0);       // [1, N, hd]
  const auto cos = emb.cos().to(embed_.scalar_type()), sin = emb.sin().to(embed_.scalar_type());
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));

  at::Tensor x = at::embedding(embed_, long_tensor(in.token_ids, dev)).unsqueeze(0);  // [1,N,H]
  at::Tensor branch;  // the previous layer's MLP output, added fused with the next norm
  for (size_t l = 0; l < layers_.size(); ++l) {
    const auto& L = layers_[l];
    auto [res, normed] = kernels::add_rms_norm(x, branch, L.input_norm, eps);
    const auto qkv = linear_fused(normed, {L.q, L.k, L.v});
    const auto q = kernels::apply_rope(qkv[0].view({1, N, nh, hd}), cos, sin);   // [1,N,nh,hd]
    const auto k = kernels::apply_rope(qkv[1].view({1, N, nkv, hd}), cos, sin);  // [1,N,nkv,hd]
    const auto v = qkv[2].view({1, N, nkv, hd});
    cache.keys(l).index_copy_(0, slots, k.squeeze(0));
    cache.values(l).index_copy_(0, slots, v.squeeze(0));
    const auto attn = paged_attention(q.squeeze(0), cache.keys(l), cache.values(l), plan, scale);
    const auto o = core::linear(attn.view({1, N, nh * hd}), L.o);
    auto [h, n2] = kernels::add_rms_norm(res, o, L.post_norm, eps);
    const auto gate_up = linear_fused(n2, {L.gate, L.up}, FusedLayout::kSeparate);
    branch = core::linear(kernels::swiglu(gate_up[0], gate_up[1]), L.down);
    x = h;
  }
  const auto rows = long_tensor(in.logit_tokens, dev);  // [M]
  const auto last =
      kernels::add_rms_norm(x.index_select(1, rows), branch.index_select(1, rows), final_norm_, eps)
          .second;  // [1, M, H]
  return at::linear(last.squeeze(0), lm_head_).to(at::kFloat).to(at::kCPU).contiguous();
}

}  // namespace posttrain::core::generate
