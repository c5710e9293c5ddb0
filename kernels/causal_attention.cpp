// See causal_attention.h. Work splits over (row, head) forward and (row, kv head) backward with
// at::parallel_for (inline inside the trainer's per-thread row slices), each item running its
// GEMMs single-threaded. The GEMMs go to the BLAS LibTorch exports (the Fortran sgemm_ entry
// point of the MKL it bundles, found at configure time: POSTTRAIN_HAVE_SGEMM), else to ATen's
// mm on views, whose dispatch costs a few microseconds per call.
#include "kernels/causal_attention.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include "kernels/cpu_vec.h"

#ifdef POSTTRAIN_HAVE_SGEMM
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n,
                       const int* k, const float* alpha, const float* a, const int* lda,
                       const float* b, const int* ldb, const float* beta, float* c,
                       const int* ldc);
#endif

namespace posttrain::kernels {

bool& causal_attention_allowed() {
  static bool allowed = true;
  return allowed;
}

bool causal_attention_enabled() {
  static const bool disabled = std::getenv("POSTTRAIN_NO_CPU_ATTENTION") != nullptr;
  return !disabled && causal_attention_allowed();
}

bool& attention_blas_allowed() {
  static bool allowed = true;
  return allowed;
}

namespace {

constexpr int64_t kBlockRows = 64;  // query rows per block: one [64, keys] score tile in cache
constexpr int64_t kLanes = 16;      // partial results per row reduction (two AVX2 registers)

// C = alpha op(A) op(B) + beta C, all row-major: op(A) is [m, k], stored as [m, k] with row
// stride lda, or (ta) as [k, m]; likewise op(B) [k, n]. beta 0 ignores C's old contents.
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
#ifdef POSTTRAIN_HAVE_SGEMM
  if (attention_blas_allowed() && std::max({m, n, k, lda, ldb, ldc}) < INT_MAX) {
    // Column-major BLAS sees each row-major matrix transposed: C^T = op(B)^T op(A)^T.
    const char tra = ta ? 'T' : 'N', trb = tb ? 'T' : 'N';
    const int mi = static_cast<int>(n), ni = static_cast<int>(m), ki = static_cast<int>(k);
    const int la = static_cast<int>(ldb), lb = static_cast<int>(lda), lc = static_cast<int>(ldc);
    sgemm_(&trb, &tra, &mi, &ni, &ki, &alpha, b, &la, a, &lb, &beta, c, &lc);
    return;
  }
#endif
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  auto view = [&](const float* p, int64_t rows, int64_t cols, int64_t ld, bool t) {
    auto x = at::from_blob(const_cast<float*>(p), {t ? cols : rows, t ? rows : cols}, {ld, 1},
                           opts);
    return t ? x.t() : x;
  };
  auto out = at::from_blob(c, {m, n}, {ldc, 1}, opts);
  if (k == 0) {
    beta == 0.0f ? out.zero_() : out.mul_(beta);
    return;
  }
  out.addmm_(view(a, m, k, lda, ta), view(b, k, n, ldb, tb), beta, alpha);
}

float row_max(const float* x, int64_t n) {
  float mx = 0.0f;
  cpu::run_isa([&] { mx = cpu::max_of(x, n); });
  return mx;
}

// x[j] <- exp(x[j] - sub) for j < n (every x[j] <= sub); returns their sum.
float exp_shift(float* x, int64_t n, float sub) {
  float total = 0.0f;
  cpu::run_isa([&] {
    float* __restrict xr = x;
    float acc[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= n; j += kLanes) {
      for (int64_t l = 0; l < kLanes; ++l) {
        const float e = cpu::exp_neg_clamped(sub - xr[j + l]);
        xr[j + l] = e;
        acc[l] += e;
      }
    }
    for (; j < n; ++j) {
      xr[j] = cpu::exp_neg_clamped(sub - xr[j]);
      total += xr[j];
    }
    for (int64_t l = 0; l < kLanes; ++l) total += acc[l];
  });
  return total;
}

// One head's rows as a strided matrix: element (b, t, h, d) at p + b sb + t st + h sh + d.
struct Heads {
  float* p;
  int64_t sb, st, sh;
  float* at(int64_t b, int64_t t, int64_t h) const { return p + b * sb + t * st + h * sh; }
};

Heads heads_of(const at::Tensor& x) {
  return {const_cast<float*>(x.data_ptr<float>()), x.stride(0), x.stride(1), x.stride(2)};
}

// The keys block [r0, r1) of batch row b may see: [first, r1).
int64_t first_key(const int64_t* doc, int64_t r0, int64_t r1) {
  if (!doc) return 0;
  int64_t lo = r0;
  for (int64_t t = r0; t < r1; ++t) lo = std::min(lo, doc[t]);
  return lo;
}

// Scaled scores of query rows [r0, r1) of (b, h) against keys [k0, r1) (kv head g) into
// s [rows, n], n = r1 - k0. Each row's own visible keys are row_window()'s.
void scores(const Heads& q, const Heads& k, int64_t b, int64_t h, int64_t g, int64_t r0,
            int64_t r1, int64_t k0, int64_t d, float scale, float* s) {
  const int64_t n = r1 - k0;
  gemm(false, true, r1 - r0, n, d, scale, q.at(b, r0, h), q.st, k.at(b, k0, g), k.st, 0.0f, s,
       n);
}

// One batch row's key spans: token t sees [doc[t], pe[t]) and [ss[t], t]. Null pe and ss:
// both equal doc (no prefix part); null doc: 0.
struct RowSpans {
  const int64_t *doc, *pe, *ss;
};

// Row t's visible keys as offsets into a score row starting at key k0: the prefix part
// [p0, p1) and the own part [s0, s1), with p0 <= p1 <= s0 < s1.
struct Window {
  int64_t p0, p1, s0, s1;
};

Window row_window(const RowSpans& r, int64_t t, int64_t k0) {
  const int64_t doc = (r.doc ? r.doc[t] : 0) - k0;
  if (!r.pe) return {doc, doc, doc, t - k0 + 1};
  return {doc, r.pe[t] - k0, r.ss[t] - k0, t - k0 + 1};
}

float window_max(const float* row, const Window& w) {
  float mx = row_max(row + w.s0, w.s1 - w.s0);
  if (w.p1 > w.p0) mx = std::max(mx, row_max(row + w.p0, w.p1 - w.p0));
  return mx;
}

// exp(x - sub) over both parts of the window and zero elsewhere in the row of n; returns the
// sum of the exps.
float window_exp(float* row, int64_t n, const Window& w, float sub) {
  float sum = exp_shift(row + w.s0, w.s1 - w.s0, sub);
  if (w.p1 > w.p0) sum += exp_shift(row + w.p0, w.p1 - w.p0, sub);
  std::fill(row, row + w.p0, 0.0f);
  std::fill(row + w.p1, row + w.s0, 0.0f);
  std::fill(row + w.s1, row + n, 0.0f);
  return sum;
}

struct Problem {
  Heads q, k, v;
  const int64_t* doc;  // [B, T] or null
  const int64_t* pe;   // [B, T] or null (then ss is null too)
  const int64_t* ss;   // [B, T] or null
  int64_t B, T, nh, nkv, d;
  float scale;
};

RowSpans row_spans(const Problem& pr, int64_t b) {
  const int64_t off = b * pr.T;
  return {pr.doc ? pr.doc + off : nullptr, pr.pe ? pr.pe + off : nullptr,
          pr.ss ? pr.ss + off : nullptr};
}

// Forward of (b, h): out rows and lse [T] for that head.
void forward_head(const Problem& pr, int64_t b, int64_t h, const Heads& out, float* lse,
                  std::vector<float>& s, std::vector<float>& inv) {
  const int64_t g = h / (pr.nh / pr.nkv);
  const RowSpans spans = row_spans(pr, b);
  for (int64_t r0 = 0; r0 < pr.T; r0 += kBlockRows) {
    const int64_t r1 = std::min(pr.T, r0 + kBlockRows), rows = r1 - r0;
    const int64_t k0 = first_key(spans.doc, r0, r1), n = r1 - k0;
    scores(pr.q, pr.k, b, h, g, r0, r1, k0, pr.d, pr.scale, s.data());
    for (int64_t i = 0; i < rows; ++i) {
      float* row = s.data() + i * n;
      const Window w = row_window(spans, r0 + i, k0);
      const float mx = window_max(row, w);
      const float sum = window_exp(row, n, w, mx);
      lse[r0 + i] = mx + std::log(sum);
      inv[i] = 1.0f / sum;
    }
    // Unnormalised probabilities times values, then each row divided by its sum.
    float* o = out.at(b, r0, h);
    gemm(false, false, rows, pr.d, n, 1.0f, s.data(), n, pr.v.at(b, k0, g), pr.v.st, 0.0f, o,
         out.st);
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < pr.d; ++j) o[i * out.st + j] *= inv[i];
    }
  }
}

// Backward of kv head g of row b: dq for its query heads, dk and dv accumulated over them.
// With P the probabilities and Di = dO_i . O_i: dP = dO V^T, dS = P (dP - Di),
// dQ = scale dS K, dK = scale dS^T Q, dV = P^T dO.
void backward_group(const Problem& pr, int64_t b, int64_t g, const Heads& out, const Heads& dout,
                    const float* lse, const Heads& dq, const Heads& dk, const Heads& dv,
                    std::vector<float>& s, std::vector<float>& dp) {
  const int64_t group = pr.nh / pr.nkv;
  const RowSpans spans = row_spans(pr, b);
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    const float* lse_h = lse + (b * pr.nh + h) * pr.T;
    for (int64_t r0 = 0; r0 < pr.T; r0 += kBlockRows) {
      const int64_t r1 = std::min(pr.T, r0 + kBlockRows), rows = r1 - r0;
      const int64_t k0 = first_key(spans.doc, r0, r1), n = r1 - k0;
      scores(pr.q, pr.k, b, h, g, r0, r1, k0, pr.d, pr.scale, s.data());
      const float* dob = dout.at(b, r0, h);
      gemm(false, true, rows, n, pr.d, 1.0f, dob, dout.st, pr.v.at(b, k0, g), pr.v.st, 0.0f,
           dp.data(), n);
      for (int64_t i = 0; i < rows; ++i) {
        float* prow = s.data() + i * n;
        float* dprow = dp.data() + i * n;
        window_exp(prow, n, row_window(spans, r0 + i, k0), lse_h[r0 + i]);
        const float* o_i = out.at(b, r0 + i, h);
        const float* do_i = dob + i * dout.st;
        float di = 0.0f;
        for (int64_t j = 0; j < pr.d; ++j) di += do_i[j] * o_i[j];
        cpu::run_isa([&] {
          const float* __restrict pr_ = prow;
          float* __restrict dr = dprow;
          for (int64_t j = 0; j < n; ++j) dr[j] = pr_[j] * (dr[j] - di);
        });
      }
      gemm(false, false, rows, pr.d, n, pr.scale, dp.data(), n, pr.k.at(b, k0, g), pr.k.st, 0.0f,
           dq.at(b, r0, h), dq.st);
      gemm(true, false, n, pr.d, rows, pr.scale, dp.data(), n, pr.q.at(b, r0, h), pr.q.st, 1.0f,
           dk.at(b, k0, g), dk.st);
      gemm(true, false, n, pr.d, rows, 1.0f, s.data(), n, dob, dout.st, 1.0f, dv.at(b, k0, g),
           dv.st);
    }
  }
}

// doc, pe, ss: [B, T] int64, or empty when absent.
Problem problem_of(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                   const at::Tensor& doc, const at::Tensor& pe, const at::Tensor& ss,
                   double scale) {
  auto ptr = [](const at::Tensor& x) { return x.numel() > 0 ? x.data_ptr<int64_t>() : nullptr; };
  return {heads_of(q),
          heads_of(k),
          heads_of(v),
          ptr(doc),
          ptr(pe),
          ptr(ss),
          q.size(0),
          q.size(1),
          q.size(2),
          k.size(2),
          q.size(3),
          static_cast<float>(scale)};
}

struct CausalAttentionFunction : torch::autograd::Function<CausalAttentionFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q,
                            const at::Tensor& k, const at::Tensor& v, const at::Tensor& doc,
                            const at::Tensor& pe, const at::Tensor& ss, double scale) {
    const Problem pr = problem_of(q, k, v, doc, pe, ss, scale);
    auto out = at::empty({pr.B, pr.T, pr.nh, pr.d}, q.options());  // [B, T, nh, D]
    auto lse = at::empty({pr.B, pr.nh, pr.T}, q.options());          // [B, nh, T]
    const Heads o = heads_of(out);
    float* lsep = lse.data_ptr<float>();
    at::parallel_for(0, pr.B * pr.nh, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> s(kBlockRows * pr.T), inv(kBlockRows);
      for (int64_t i = begin; i < end; ++i) {
        forward_head(pr, i / pr.nh, i % pr.nh, o, lsep + i * pr.T, s, inv);
      }
    });
    ctx->save_for_backward({q, k, v, out, lse, doc, pe, ss});
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3], &lse = saved[4];
    const auto &doc = saved[5], &pe = saved[6], &ss = saved[7];
    const Problem pr = problem_of(q, k, v, doc, pe, ss, ctx->saved_data["scale"].toDouble());
    const auto dout = grads[0].to(at::kFloat).contiguous();  // [B, T, nh, D]
    auto dq = at::empty({pr.B, pr.T, pr.nh, pr.d}, q.options());   // [B, T, nh, D]
    auto dk = at::zeros({pr.B, pr.T, pr.nkv, pr.d}, k.options());  // [B, T, nkv, D]
    auto dv = at::zeros({pr.B, pr.T, pr.nkv, pr.d}, v.options());  // [B, T, nkv, D]
    const Heads o = heads_of(out), dO = heads_of(dout), dQ = heads_of(dq), dK = heads_of(dk),
                dV = heads_of(dv);
    const float* lsep = lse.data_ptr<float>();
    at::parallel_for(0, pr.B * pr.nkv, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> s(kBlockRows * pr.T), dp(kBlockRows * pr.T);
      for (int64_t i = begin; i < end; ++i) {
        backward_group(pr, i / pr.nkv, i % pr.nkv, o, dO, lsep, dQ, dK, dV, s, dp);
      }
    });
    return {dq, dk, dv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool causal_attention_supported(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  for (const auto* t : {&q, &k, &v}) {
    if (!t->defined() || !t->is_cpu() || t->scalar_type() != at::kFloat || t->dim() != 4 ||
        t->stride(3) != 1) {
      return false;
    }
  }
  return true;
}

namespace {

void check_qkv(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  TORCH_CHECK(causal_attention_supported(q, k, v),
              "causal_attention: q, k, v must be CPU float32 [B, T, heads, D] with unit stride "
              "in D");
  TORCH_CHECK(k.sizes() == v.sizes() && q.size(0) == k.size(0) && q.size(1) == k.size(1) &&
                  q.size(3) == k.size(3) && k.size(2) > 0 && q.size(2) % k.size(2) == 0,
              "causal_attention: q ", q.sizes(), " and k/v ", k.sizes(), " ", v.sizes(),
              " do not fit (same B, T, D; query heads a multiple of kv heads)");
}

// A [B, T] index tensor as contiguous CPU int64, its shape checked against q's.
at::Tensor index_tensor(const at::Tensor& x, const at::Tensor& q, const char* name) {
  TORCH_CHECK(x.dim() == 2 && x.size(0) == q.size(0) && x.size(1) == q.size(1),
              "causal_attention: ", name, " must be [B, T], got ", x.sizes());
  return x.to(at::kCPU).to(at::kLong).contiguous();
}

// doc, pe, ss: checked [B, T] int64, or empty (autograd's apply takes only defined tensors).
at::Tensor run_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& doc, const at::Tensor& pe, const at::Tensor& ss,
                         double scale) {
  if (q.numel() == 0) return at::zeros({q.size(0), q.size(1), q.size(2), q.size(3)}, q.options());
  return CausalAttentionFunction::apply(q, k, v, doc, pe, ss, scale);
}

}  // namespace

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& doc_start, double scale) {
  check_qkv(q, k, v);
  at::Tensor doc = at::empty({0}, at::kLong);
  if (doc_start.defined()) {
    doc = index_tensor(doc_start, q, "doc_start");
    const auto t = at::arange(q.size(1), doc.options()).unsqueeze(0);  // [1, T]
    TORCH_CHECK(doc.ge(0).logical_and(doc.le(t)).all().item<bool>(),
                "causal_attention: doc_start[b, t] must lie in [0, t]");
  }
  const auto none = at::empty({0}, at::kLong);
  return run_attention(q, k, v, doc, none, none, scale);
}

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& doc_start, const at::Tensor& prefix_end,
                            const at::Tensor& seg_start, double scale) {
  check_qkv(q, k, v);
  TORCH_CHECK(doc_start.defined() && prefix_end.defined() && seg_start.defined(),
              "causal_attention: doc_start, prefix_end and seg_start must all be given");
  const auto doc = index_tensor(doc_start, q, "doc_start");
  const auto pe = index_tensor(prefix_end, q, "prefix_end");
  const auto ss = index_tensor(seg_start, q, "seg_start");
  const auto t = at::arange(q.size(1), doc.options()).unsqueeze(0);  // [1, T]
  TORCH_CHECK(
      doc.ge(0).logical_and(doc.le(pe)).logical_and(pe.le(ss)).logical_and(ss.le(t)).all()
          .item<bool>(),
      "causal_attention: need 0 <= doc_start <= prefix_end <= seg_start <= t for every token");
  return run_attention(q, k, v, doc, pe, ss, scale);
}

at::Tensor run_starts(const at::Tensor& ids) {
  TORCH_CHECK(ids.dim() == 2, "run_starts: ids must be [B, T]");
  const int64_t B = ids.size(0), T = ids.size(1);
  const auto opts = ids.options().dtype(at::kLong);
  auto starts = at::zeros({B, T}, opts);  // [B, T]
  if (T <= 1) return starts;
  const auto change = ids.narrow(1, 1, T - 1).ne(ids.narrow(1, 0, T - 1));  // [B, T-1]
  const auto pos = at::arange(1, T, opts).unsqueeze(0).expand({B, T - 1});   // [B, T-1]
  starts.narrow(1, 1, T - 1).copy_(at::where(change, pos, 0));
  return std::get<0>(starts.cummax(1));
}

at::Tensor document_starts(const at::Tensor& document_ids) {
  TORCH_CHECK(document_ids.dim() == 2, "document_starts: ids must be [B, T]");
  const int64_t T = document_ids.size(1);
  const auto ids = document_ids.to(at::kLong);
  // One contiguous run per id: runs in a row equal its distinct ids. Ids that only rise (what
  // packing writes) are the cheap sufficient case; otherwise count distinct ids per row.
  if (T > 1 && !ids.narrow(1, 1, T - 1).ge(ids.narrow(1, 0, T - 1)).all().item<bool>()) {
    const auto runs = ids.narrow(1, 1, T - 1).ne(ids.narrow(1, 0, T - 1)).sum(1) + 1;  // [B]
    for (int64_t b = 0; b < ids.size(0); ++b) {
      if (std::get<0>(at::_unique(ids[b])).numel() != runs[b].item<int64_t>()) return {};
    }
  }
  return run_starts(ids);
}

}  // namespace posttrain::kernels
