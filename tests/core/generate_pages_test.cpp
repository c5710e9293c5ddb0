// KV pages of the decoder (core/generate): reservations never over-commit the pool, forks share
// pages, and a write into a shared page copies it first, leaving the other holder's keys intact.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <stdexcept>

#include "core/generate/kv_cache.h"
#include "core/generate/page_allocator.h"
#include "core/generate/page_table.h"

namespace posttrain::core::generate {
namespace {

TEST(GeneratePages, ReservationsNeverExceedThePool) {
  PageAllocator a(5);
  EXPECT_TRUE(a.reserve(3));
  EXPECT_FALSE(a.reserve(3));  // only 2 left: refused, nothing reserved
  EXPECT_EQ(a.available_pages(), 2);
  const int32_t p = a.take_reserved();
  EXPECT_EQ(a.refcount(p), 1);
  EXPECT_EQ(a.free_pages(), 4);
  EXPECT_EQ(a.available_pages(), 2);  // taking from a reservation leaves others' room as it was
  a.retain(p);
  a.release(p);
  EXPECT_EQ(a.free_pages(), 4);
  a.release(p);
  EXPECT_EQ(a.free_pages(), 5);
  a.unreserve(2);
  EXPECT_EQ(a.available_pages(), 5);
  EXPECT_THROW(a.take_reserved(), std::logic_error);  // no reservation held
  EXPECT_THROW(a.release(p), std::logic_error);       // already free
}

TEST(GeneratePages, PagesToGrowCountsTheSharedPartialPage) {
  // Page size 4. A 6-token prompt fills page 0 and half of page 1; a sample growing to 13
  // written positions needs a copy of page 1 plus pages 2 and 3: 3 pages.
  EXPECT_EQ(pages_to_grow(6, 13, 4), 3);
  // An 8-token prompt ends on a page boundary: pages 2 and 3 only.
  EXPECT_EQ(pages_to_grow(8, 13, 4), 2);
  EXPECT_EQ(pages_to_grow(8, 8, 4), 0);
}

TEST(GeneratePages, ForkSharesAndWriteCopiesOnlyTheSharedPartialPage) {
  KvCacheShape shape;
  shape.layers = 2, shape.kv_heads = 1, shape.head_dim = 2, shape.page_size = 4;
  shape.num_pages = 8;
  KvCache cache(shape, at::TensorOptions().dtype(at::kFloat));
  PageAllocator alloc(8);
  ASSERT_TRUE(alloc.reserve(8));
  PageTable prompt;
  prompt.prepare_write(0, 6, alloc, cache);  // 6 tokens: 2 pages
  ASSERT_EQ(prompt.pages().size(), 2u);
  for (int64_t l = 0; l < 2; ++l) {
    for (int64_t j = 0; j < 6; ++j) cache.keys(l)[prompt.slot(j, 4)].fill_(100 * l + j);
  }
  PageTable a = prompt.fork(alloc), b = prompt.fork(alloc);
  prompt.release(alloc);
  EXPECT_EQ(alloc.refcount(a.pages()[0]), 2);
  // a writes position 6: page 1 is shared, so a gets a copy holding positions 4 and 5.
  a.prepare_write(6, 7, alloc, cache);
  EXPECT_NE(a.pages()[1], b.pages()[1]);
  EXPECT_EQ(a.pages()[0], b.pages()[0]);  // the full page stays shared
  EXPECT_EQ(a.pages_taken(), 1);
  for (int64_t l = 0; l < 2; ++l) {
    for (int64_t j = 4; j < 6; ++j) {
      EXPECT_EQ(cache.keys(l)[a.slot(j, 4)][0][0].item<float>(), 100 * l + j);
    }
  }
  cache.keys(1)[a.slot(6, 4)].fill_(-1);
  // b is now the page's only holder: it writes in place, no copy.
  EXPECT_EQ(alloc.refcount(b.pages()[1]), 1);
  b.prepare_write(6, 9, alloc, cache);
  EXPECT_EQ(b.pages_taken(), 1);  // page 2 only
  EXPECT_EQ(cache.keys(1)[b.slot(5, 4)][0][0].item<float>(), 105);
  a.release(alloc);
  b.release(alloc);
  EXPECT_EQ(alloc.free_pages(), 8);
}

}  // namespace
}  // namespace posttrain::core::generate
