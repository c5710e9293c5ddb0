// causal_attention (CPU float32) against attention written out by its definition in float64:
// softmax(scale q k^T) v over the keys each query may see (causal, within its document), values
// and gradients through float64 autograd; also against ATen's own float32 attention, for strided
// inputs (column blocks of one projection), odd sizes, and with the BLAS GEMMs and with ATen's.
// Shared-prefix spans against the rule written on segment ids. document_starts against
// hand-derived starts.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>

#include <cmath>
#include <vector>

#include "kernels/causal_attention.h"
#include "float64_checks.h"

namespace posttrain::kernels {
namespace {

using reference::expect_near;

// Runs each test with the BLAS GEMMs allowed (true) and with ATen's mm (false).
class CausalAttention : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { attention_blas_allowed() = GetParam(); }
  void TearDown() override { attention_blas_allowed() = true; }
};

// The definition in float64: q [B, T, nh, D], k/v [B, T, nkv, D], visible [B, T, T] bool.
at::Tensor reference_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& visible, double scale) {
  const int64_t nh = q.size(2), group = nh / k.size(2);
  const auto kh = k.repeat_interleave(group, 2).transpose(1, 2);  // [B, nh, T, D]
  const auto vh = v.repeat_interleave(group, 2).transpose(1, 2);  // [B, nh, T, D]
  auto s = at::matmul(q.transpose(1, 2), kh.transpose(-1, -2)) * scale;  // [B, nh, T, T]
  s = s.masked_fill(visible.logical_not().unsqueeze(1), -INFINITY);
  return at::matmul(at::softmax(s, -1), vh).transpose(1, 2);  // [B, T, nh, D]
}

// visible[b, i, j]: j <= i and j in i's document (ids [B, T]; undefined = one document).
at::Tensor visibility(int64_t B, int64_t T, const at::Tensor& ids) {
  auto vis = at::ones({T, T}, at::kBool).tril().unsqueeze(0).expand({B, T, T});
  if (ids.defined()) vis = vis.logical_and(ids.unsqueeze(2).eq(ids.unsqueeze(1)));
  return vis;
}

struct Case {
  int64_t B, T, nh, nkv, D;
};

// What a query may see: the spans given to our kernel (doc undefined = plain causal; pe and ss
// undefined = documents only) and the same as a dense [B, T, T] matrix for the reference.
struct Visibility {
  at::Tensor doc, pe, ss, dense;
};

// Runs ours and the float64 reference on the same random q, k, v (as column blocks of one
// [B, T, (nh + 2 nkv) D] tensor when `strided`) and compares outputs and all three gradients.
void check_visible(const Case& c, const Visibility& vis, bool strided, double tol = 2e-6) {
  at::manual_seed(17);
  const int64_t w = (c.nh + 2 * c.nkv) * c.D;
  const auto qkv = at::randn({c.B, c.T, w});  // [B, T, W]
  auto q = qkv.narrow(2, 0, c.nh * c.D).view({c.B, c.T, c.nh, c.D});
  auto k = qkv.narrow(2, c.nh * c.D, c.nkv * c.D).view({c.B, c.T, c.nkv, c.D});
  auto v = qkv.narrow(2, (c.nh + c.nkv) * c.D, c.nkv * c.D).view({c.B, c.T, c.nkv, c.D});
  if (!strided) q = q.contiguous(), k = k.contiguous(), v = v.contiguous();
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.D));
  const auto dout = at::randn({c.B, c.T, c.nh, c.D});

  auto q32 = q.detach().requires_grad_(true), k32 = k.detach().requires_grad_(true),
       v32 = v.detach().requires_grad_(true);
  const auto out = vis.pe.defined()
                       ? causal_attention(q32, k32, v32, vis.doc, vis.pe, vis.ss, scale)
                       : causal_attention(q32, k32, v32, vis.doc, scale);
  ASSERT_TRUE(out.is_contiguous());
  out.backward(dout);

  auto q64 = q.detach().to(at::kDouble).requires_grad_(true),
       k64 = k.detach().to(at::kDouble).requires_grad_(true),
       v64 = v.detach().to(at::kDouble).requires_grad_(true);
  const auto ref = reference_attention(q64, k64, v64, vis.dense, scale);
  ref.backward(dout.to(at::kDouble));

  expect_near(out, ref.detach(), tol, "out");
  expect_near(q32.grad(), q64.grad(), tol * 4, "dq");
  expect_near(k32.grad(), k64.grad(), tol * 4, "dk");
  expect_near(v32.grad(), v64.grad(), tol * 4, "dv");
}

// Documents given as ids [B, T] (undefined = one per row).
void check_case(const Case& c, const at::Tensor& ids, bool strided, double tol = 2e-6) {
  Visibility vis;
  if (ids.defined()) {
    vis.doc = document_starts(ids);
    ASSERT_TRUE(vis.doc.defined());
  }
  vis.dense = visibility(c.B, c.T, ids);
  check_visible(c, vis, strided, tol);
}

// A row as documents, each a prefix length then segment lengths (none: a plain document).
using DocumentParts = std::vector<std::pair<int64_t, std::vector<int64_t>>>;

// Spans written out per token from the parts (doc start, end of the document's prefix, start
// of the token's own run), and the dense matrix from per-token document and segment ids by the
// rule itself: key j is visible to query i when j <= i, same document, and j is in the prefix
// (segment 0) or in i's segment.
Visibility shared_prefix_visibility(const std::vector<DocumentParts>& rows, int64_t T) {
  const int64_t B = static_cast<int64_t>(rows.size());
  std::vector<int64_t> doc(B * T), pe(B * T), ss(B * T), doc_id(B * T), seg_id(B * T);
  for (int64_t b = 0; b < B; ++b) {
    int64_t t = 0, d = 0;
    for (const auto& [prefix, segments] : rows[b]) {
      const int64_t start = t;
      for (int64_t i = 0; i < prefix; ++i, ++t) {
        doc[b * T + t] = pe[b * T + t] = ss[b * T + t] = start;
        doc_id[b * T + t] = d, seg_id[b * T + t] = 0;
      }
      for (size_t s = 0; s < segments.size(); ++s) {
        const int64_t seg_start = t;
        for (int64_t i = 0; i < segments[s]; ++i, ++t) {
          doc[b * T + t] = start, pe[b * T + t] = start + prefix, ss[b * T + t] = seg_start;
          doc_id[b * T + t] = d, seg_id[b * T + t] = static_cast<int64_t>(s) + 1;
        }
      }
      ++d;
    }
    EXPECT_EQ(t, T) << "row " << b << " parts must fill the row";
  }
  auto tensor = [&](const std::vector<int64_t>& x) { return at::tensor(x).view({B, T}); };
  const auto di = tensor(doc_id), si = tensor(seg_id);
  const auto same_doc = di.unsqueeze(2).eq(di.unsqueeze(1));                        // [B, T, T]
  const auto seen_seg = si.unsqueeze(1).eq(0).logical_or(si.unsqueeze(2).eq(si.unsqueeze(1)));
  const auto causal = at::ones({T, T}, at::kBool).tril().unsqueeze(0);
  return {tensor(doc), tensor(pe), tensor(ss), causal.logical_and(same_doc).logical_and(seen_seg)};
}

TEST_P(CausalAttention, CausalWithSharedKvHeadsMatchesDefinition) {
  // T = 150: two full 64-row blocks and a partial one.
  check_case({2, 150, 4, 2, 32}, {}, /*strided=*/false);
}

TEST_P(CausalAttention, ColumnBlocksOfOneProjectionAreReadInPlace) {
  check_case({2, 150, 4, 2, 32}, {}, /*strided=*/true);
}

TEST_P(CausalAttention, DocumentsConfineAttention) {
  // Row 0: documents of 37, 50 and 63 tokens (boundaries inside and across blocks); row 1: one
  // short document, then one spanning two block boundaries, then a last one of one token.
  std::vector<int64_t> a(150), b(150);
  for (int64_t t = 0; t < 150; ++t) {
    a[t] = t < 37 ? 0 : (t < 87 ? 1 : 2);
    b[t] = t < 5 ? 3 : (t < 149 ? 4 : 9);
  }
  auto ids = at::stack({at::tensor(a), at::tensor(b)});  // [2, 150]
  check_case({2, 150, 4, 2, 32}, ids, /*strided=*/true);
}

TEST_P(CausalAttention, SharedPrefixSegmentsSeePrefixAndThemselves) {
  // Row 0: a 40-token prefix with segments of 30, 25 and 20 tokens (the second starts inside
  // block 1 and ends in block 2), then a plain document of 35. Row 1: a 3-token prefix, a
  // segment of 70 across a block boundary, one of a single token, then a document with no
  // prefix and two segments (the first segment token sees only itself).
  const std::vector<DocumentParts> rows = {
      {{40, {30, 25, 20}}, {35, {}}},
      {{3, {70, 1}}, {0, {40, 36}}},
  };
  check_visible({2, 150, 4, 2, 32}, shared_prefix_visibility(rows, 150), /*strided=*/true);
  // Equal head counts, an odd head size, single-token segments.
  check_visible({1, 9, 3, 3, 5}, shared_prefix_visibility({{{2, {1, 1, 3}}, {1, {1}}}}, 9),
                /*strided=*/false);
}

TEST_P(CausalAttention, SpansWithoutPrefixEqualDocuments) {
  // prefix_end = seg_start = doc_start is the document-only form, bit for bit.
  at::manual_seed(5);
  const auto q = at::randn({1, 100, 2, 8}), k = at::randn({1, 100, 1, 8}),
             v = at::randn({1, 100, 1, 8});
  const auto doc = document_starts(at::arange(100).div(30, "floor").unsqueeze(0));
  EXPECT_TRUE(causal_attention(q, k, v, doc, doc, doc, 0.4).equal(
      causal_attention(q, k, v, doc, 0.4)));
}

TEST_P(CausalAttention, OddSizesAndEqualHeadCounts) {
  check_case({1, 1, 3, 3, 5}, {}, false);
  check_case({3, 67, 2, 1, 7}, {}, true);
  check_case({1, 130, 6, 3, 16}, at::arange(130).div(9, "floor").unsqueeze(0), false);
}

TEST_P(CausalAttention, MatchesAtenAttention) {
  at::manual_seed(3);
  const int64_t B = 2, T = 200, nh = 4, nkv = 2, D = 32;
  const auto q = at::randn({B, T, nh, D}), k = at::randn({B, T, nkv, D}),
             v = at::randn({B, T, nkv, D});
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const auto ours = causal_attention(q, k, v, {}, scale);
  const auto aten = at::scaled_dot_product_attention(
                        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), {}, 0.0, true,
                        std::nullopt, /*enable_gqa=*/true)
                        .transpose(1, 2);
  expect_near(ours, aten.to(at::kDouble), 1e-5, "out vs ATen");
}

TEST_P(CausalAttention, GradientOnlyWhereAsked) {
  at::manual_seed(4);
  const auto q = at::randn({1, 70, 2, 8}).requires_grad_(true);
  const auto k = at::randn({1, 70, 1, 8}), v = at::randn({1, 70, 1, 8});
  causal_attention(q, k, v, {}, 0.3).sum().backward();
  ASSERT_TRUE(q.grad().defined());
  EXPECT_TRUE(q.grad().isfinite().all().item<bool>());
  EXPECT_FALSE(k.grad().defined());
  // Row 0 sees only key 0: its output is v[0] whatever q is, so q's gradient there is zero.
  EXPECT_EQ(q.grad()[0][0].abs().max().item<float>(), 0.0f);
}

INSTANTIATE_TEST_SUITE_P(Gemm, CausalAttention, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Blas" : "AtenMm"; });

TEST(CausalAttentionInput, RejectsWhatItCannotCompute) {
  const auto q = at::randn({1, 4, 2, 8}), k = at::randn({1, 4, 1, 8});
  EXPECT_THROW(causal_attention(q, k, at::randn({1, 4, 2, 8}), {}, 1.0), c10::Error);
  EXPECT_THROW(causal_attention(q, at::randn({1, 4, 3, 8}), at::randn({1, 4, 3, 8}), {}, 1.0),
               c10::Error);
  EXPECT_THROW(causal_attention(q.to(at::kDouble), k, k, {}, 1.0), c10::Error);
  // A document may not start after its token.
  EXPECT_THROW(causal_attention(q, k, k, at::tensor({0, 0, 3, 2}).unsqueeze(0), 1.0), c10::Error);
  EXPECT_FALSE(causal_attention_supported(q.transpose(2, 3), k, k));
  // Spans out of order: a prefix that ends after the segment starts, a segment after its token.
  const auto zero = at::zeros({1, 4}, at::kLong), t = at::arange(4).unsqueeze(0);
  EXPECT_THROW(causal_attention(q, k, k, zero, at::tensor({0, 1, 2, 3}).unsqueeze(0), zero, 1.0),
               c10::Error);
  EXPECT_THROW(causal_attention(q, k, k, zero, zero, t + 1, 1.0), c10::Error);
  EXPECT_NO_THROW(causal_attention(q, k, k, zero, zero, t, 1.0));
}

TEST(DocumentStarts, HandDerived) {
  const auto rising = at::tensor({0, 0, 0, 1, 1, 2, 2, 2}).unsqueeze(0);
  EXPECT_TRUE(document_starts(rising).equal(at::tensor({0, 0, 0, 3, 3, 5, 5, 5}).unsqueeze(0)));
  // Ids need not rise, only stay contiguous.
  const auto falling = at::tensor({5, 5, 3, 3, 3}).unsqueeze(0);
  EXPECT_TRUE(document_starts(falling).equal(at::tensor({0, 0, 2, 2, 2}).unsqueeze(0)));
  // An id that comes back is not one run: no starts can describe it.
  EXPECT_FALSE(document_starts(at::tensor({0, 0, 1, 1, 0}).unsqueeze(0)).defined());
  const auto two = at::tensor({7, 7, 8, 8, 8, 1, 1, 2, 2, 2}).view({2, 5});
  EXPECT_TRUE(document_starts(two).equal(at::tensor({0, 0, 2, 2, 2, 0, 0, 2, 2, 2}).view({2, 5})));
}

}  // namespace
}  // namespace posttrain::kernels
