#include "core/generate/paged_attention.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

namespace posttrain::core::generate {
namespace {

// a . b over n floats with 8 partial sums (vectorises without -ffast-math).
inline float dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// The loop path: every (token of a loop run, kv head) pair reads its keys page by page, scores
// the kv head's group of query heads against them, and sums the values by the softmax weights.
void loop_attention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                    const AttentionPlan& plan, double scale, at::Tensor& out) {
  struct Item {
    int64_t token, ctx;
    const int32_t* pages;
  };
  std::vector<Item> items;
  const auto& runs = plan.runs();
  for (size_t r = 0; r < runs.size(); ++r) {
    if (!plan.loop_path(r)) continue;
    for (int64_t i = 0; i < runs[r].count; ++i) {
      items.push_back({runs[r].first_token + i, runs[r].start_pos + i + 1, runs[r].pages->data()});
    }
  }
  if (items.empty()) return;
  const int64_t nh = q.size(1), hd = q.size(2), nkv = keys.size(1), G = nh / nkv;
  const int64_t ps = plan.page_size();
  const float* qp = q.data_ptr<float>();
  const float* kp = keys.data_ptr<float>();
  const float* vp = values.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const float fscale = static_cast<float>(scale);
  const int64_t n_items = static_cast<int64_t>(items.size()) * nkv;
  int64_t work = 0;  // multiply-adds
  for (const auto& item : items) work += 2 * item.ctx * nh * hd;
  // Small steps run on this thread: a parallel region costs more than it saves there, and far
  // more on a loaded machine, where every region waits for a descheduled thread.
  const int64_t grain = work < (int64_t{1} << 21) ? n_items + 1 : 1;
  at::parallel_for(0, n_items, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> w;  // [G, ctx] scores, then weights
    for (int64_t it = begin; it < end; ++it) {
      const Item& item = items[it / nkv];
      const int64_t kvh = it % nkv, ctx = item.ctx;
      w.resize(G * ctx);
      for (int64_t j = 0; j < ctx; ++j) {
        const int64_t slot = int64_t{item.pages[j / ps]} * ps + j % ps;
        const float* kj = kp + (slot * nkv + kvh) * hd;
        for (int64_t g = 0; g < G; ++g) {
          w[g * ctx + j] = fscale * dot(qp + (item.token * nh + kvh * G + g) * hd, kj, hd);
        }
      }
      for (int64_t g = 0; g < G; ++g) {
        float* wg = w.data() + g * ctx;
        float m = wg[0];
        for (int64_t j = 1; j < ctx; ++j) m = wg[j] > m ? wg[j] : m;
        float sum = 0;
        for (int64_t j = 0; j < ctx; ++j) {
          wg[j] = std::exp(wg[j] - m);
          sum += wg[j];
        }
        const float inv = 1.0f / sum;
        float* o = op + (item.token * nh + kvh * G + g) * hd;
        for (int64_t d = 0; d < hd; ++d) o[d] = 0;
        for (int64_t j = 0; j < ctx; ++j) {
          const int64_t slot = int64_t{item.pages[j / ps]} * ps + j % ps;
          const float* vj = vp + (slot * nkv + kvh) * hd;
          const float a = wg[j] * inv;
          for (int64_t d = 0; d < hd; ++d) o[d] += a * vj[d];
        }
      }
    }
  });
}

}  // namespace

AttentionPlan::AttentionPlan(std::vector<AttentionRun> runs, int64_t page_size, at::Device device,
                             at::ScalarType dtype, bool cpu_loop)
    : runs_(std::move(runs)), page_size_(page_size) {
  const bool loop_ok = cpu_loop && device.is_cpu() && dtype == at::kFloat;
  std::vector<size_t> decode;  // gathered single-token runs
  for (size_t i = 0; i < runs_.size(); ++i) {
    const auto& r = runs_[i];
    const bool single = r.count == 1;
    batched_.push_back(!(loop_ok && r.count <= kLoopMaxTokens) && single);
    if ((loop_ok && r.count <= kLoopMaxTokens) || single) {
      if (batched_.back()) decode.push_back(i);
      slots_.emplace_back();
      masks_.emplace_back();
      continue;
    }
    const int64_t ctx = r.start_pos + r.count;
    auto slots = at::empty({ctx}, at::kLong);
    int64_t* s = slots.data_ptr<int64_t>();
    for (int64_t j = 0; j < ctx; ++j) {
      s[j] = int64_t{(*r.pages)[j / page_size]} * page_size + j % page_size;
    }
    // Query i (position start_pos + i) sees keys 0..start_pos + i.
    const auto key_pos = at::arange(ctx, at::kLong).unsqueeze(0);                 // [1, ctx]
    const auto query_pos = at::arange(r.start_pos, ctx, at::kLong).unsqueeze(1);  // [count, 1]
    slots_.push_back(slots.to(device));
    masks_.push_back(key_pos.le(query_pos).to(device));
  }
  if (decode.empty()) return;
  const int64_t D = static_cast<int64_t>(decode.size());
  int64_t max_ctx = 0;
  for (size_t i : decode) max_ctx = std::max(max_ctx, runs_[i].start_pos + 1);
  auto tokens = at::empty({D}, at::kLong);
  auto slots = at::zeros({D, max_ctx}, at::kLong);
  auto mask = at::zeros({D, max_ctx}, at::kBool);
  for (int64_t d = 0; d < D; ++d) {
    const auto& r = runs_[decode[d]];
    tokens[d] = r.first_token;
    int64_t* s = slots[d].data_ptr<int64_t>();
    for (int64_t j = 0; j < max_ctx; ++j) {
      // Padding reads the run's own first key: written data (an unwritten slot may hold NaN
      // bits, and a masked NaN value still poisons the weighted sum).
      const int64_t pos = j <= r.start_pos ? j : 0;
      s[j] = int64_t{(*r.pages)[pos / page_size]} * page_size + pos % page_size;
    }
    mask[d].narrow(0, 0, r.start_pos + 1).fill_(true);
  }
  decode_tokens_ = tokens.to(device);
  decode_slots_ = slots.to(device);
  decode_mask_ = mask.view({D, 1, 1, max_ctx}).to(device);
}

at::Tensor paged_attention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                           const AttentionPlan& plan, double scale) {
  const int64_t nh = q.size(1), hd = q.size(2), nkv = keys.size(1);
  auto qc = q.contiguous();
  auto out = at::empty_like(qc);  // [N, nh, hd]
  if (qc.is_cpu() && qc.scalar_type() == at::kFloat) {
    loop_attention(qc, keys, values, plan, scale, out);
  }
  if (plan.decode_tokens().defined()) {
    // Every gathered decode token at once: keys padded to the longest context, padding masked.
    const int64_t D = plan.decode_slots().size(0), ctx = plan.decode_slots().size(1);
    const auto flat = plan.decode_slots().view({-1});
    auto k = keys.index_select(0, flat).view({D, ctx, nkv, hd}).transpose(1, 2);  // [D,nkv,ctx,hd]
    auto v = values.index_select(0, flat).view({D, ctx, nkv, hd}).transpose(1, 2);
    if (nkv != nh) {
      k = k.unsqueeze(2).expand({D, nkv, nh / nkv, ctx, hd}).reshape({D, nh, ctx, hd});
      v = v.unsqueeze(2).expand({D, nkv, nh / nkv, ctx, hd}).reshape({D, nh, ctx, hd});
    }
    const auto q1 = qc.index_select(0, plan.decode_tokens()).unsqueeze(2);  // [D, nh, 1, hd]
    const auto o = at::scaled_dot_product_attention(q1, k, v, plan.decode_mask(), 0.0, false,
                                                    scale);  // [D, nh, 1, hd]
    out.index_copy_(0, plan.decode_tokens(), o.squeeze(2));
  }
  const auto& runs = plan.runs();
  for (size_t r = 0; r < runs.size(); ++r) {
    if (plan.loop_path(r) || plan.batched(r)) continue;
    const auto& run = runs[r];
    const int64_t ctx = run.start_pos + run.count;
    auto k = keys.index_select(0, plan.key_slots(r)).transpose(0, 1);    // [nkv, ctx, hd]
    auto v = values.index_select(0, plan.key_slots(r)).transpose(0, 1);  // [nkv, ctx, hd]
    if (nkv != nh) {
      k = k.unsqueeze(1).expand({nkv, nh / nkv, ctx, hd}).reshape({nh, ctx, hd});
      v = v.unsqueeze(1).expand({nkv, nh / nkv, ctx, hd}).reshape({nh, ctx, hd});
    }
    const auto qr = qc.narrow(0, run.first_token, run.count).transpose(0, 1);  // [nh, count, hd]
    const auto o = at::scaled_dot_product_attention(qr.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0),
                                                    plan.mask(r), 0.0, false,
                                                    scale);  // [1, nh, count, hd]
    out.narrow(0, run.first_token, run.count).copy_(o.squeeze(0).transpose(0, 1));
  }
  return out;
}

}  // namespace posttrain::core::generate
