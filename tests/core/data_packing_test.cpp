// Packing layout and collation: positions restart per document, document ids, targets, padding.
#include <gtest/gtest.h>

#include "core/data/packing.h"

namespace posttrain::core {
namespace {

std::vector<TokenizedExample> examples() {
  // Lengths 3, 2, 4, 1; every token but the first is trained.
  std::vector<TokenizedExample> out;
  int64_t next = 10;
  for (int64_t len : {3, 2, 4, 1}) {
    std::vector<int64_t> ids;
    for (int64_t k = 0; k < len; ++k) ids.push_back(next++);
    std::vector<uint8_t> mask(len, 1);
    mask[0] = 0;
    out.push_back(make_targets(ids, mask));
  }
  return out;
}

TEST(DataPacking, GreedyRowsNeverSplitAnExample) {
  auto ex = examples();
  auto rows = pack_rows(ex, {0, 1, 2, 3}, 5);
  // 3+2 = 5 fits; 4 starts a row; 4+1 = 5 fits.
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(rows[1], (std::vector<int64_t>{2, 3}));
}

TEST(DataPacking, CollatedPackedRowRestartsPositions) {
  auto ex = examples();
  MicroBatch mb = collate_rows(ex, {{0, 1}, {3}}, /*packed=*/true, /*pad_id=*/0);
  const auto ids = mb.get("input_ids"), pos = mb.get("position_ids"),
             doc = mb.get("document_ids"), tgt = mb.get("targets");
  ASSERT_EQ(ids.sizes(), (at::IntArrayRef{2, 5}));
  auto v = [](const at::Tensor& t, int64_t r) {
    auto c = t[r].contiguous();
    return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
  };
  EXPECT_EQ(v(ids, 0), (std::vector<int64_t>{10, 11, 12, 13, 14}));
  EXPECT_EQ(v(pos, 0), (std::vector<int64_t>{0, 1, 2, 0, 1}));
  EXPECT_EQ(v(doc, 0), (std::vector<int64_t>{0, 0, 0, 1, 1}));
  // Targets stay inside each document: the last token of document 0 predicts nothing.
  EXPECT_EQ(v(tgt, 0), (std::vector<int64_t>{11, 12, -100, 14, -100}));
  // Row 1: one token, then padding in a document of its own with no targets.
  EXPECT_EQ(v(ids, 1), (std::vector<int64_t>{19, 0, 0, 0, 0}));
  EXPECT_EQ(v(doc, 1)[0], 0);
  EXPECT_EQ(v(doc, 1)[1], 1);
  EXPECT_EQ(v(tgt, 1), (std::vector<int64_t>(5, -100)));
  EXPECT_EQ(mb.num_terms, 3);
  EXPECT_EQ(mb.num_tokens, 6);
  ASSERT_TRUE(mb.get("attention_mask").defined());
  EXPECT_EQ(mb.get("attention_mask").sum().item<int64_t>(), 6);
}

TEST(DataPacking, UnpackedRowsHaveNoDocumentsAndNoMaskWithoutPadding) {
  auto ex = examples();
  MicroBatch mb = collate_rows(ex, {{0}}, /*packed=*/false, 0);
  EXPECT_FALSE(mb.get("document_ids").defined());
  EXPECT_FALSE(mb.get("position_ids").defined());
  EXPECT_FALSE(mb.get("attention_mask").defined());
  EXPECT_EQ(mb.num_terms, 2);
}

TEST(DataPacking, DatasetLayoutIsSeededPerEpoch) {
  auto shared = std::make_shared<const std::vector<TokenizedExample>>(examples());
  PackingOptions o;
  o.max_seq_len = 5;
  o.packing = false;
  o.seed = 3;
  TokenRowDataset a(shared, o), b(shared, o);
  ASSERT_EQ(a.num_rows(0), 4);
  for (int64_t e = 0; e < 3; ++e) {
    for (int64_t r = 0; r < 4; ++r) {
      auto x = a.collate({{e, r}}).get("input_ids"), y = b.collate({{e, r}}).get("input_ids");
      EXPECT_TRUE(x.equal(y));
    }
  }
  // Each epoch holds every example once.
  int64_t sum = 0;
  for (int64_t r = 0; r < 4; ++r) sum += a.collate({{1, r}}).num_tokens;
  EXPECT_EQ(sum, 10);
}

}  // namespace
}  // namespace posttrain::core
