// The KV cache's storage: per layer one key and one value tensor of num_pages * page_size slots,
// [slots, kv_heads, head_dim], on the model's device in its dtype. Slot s belongs to page
// s / page_size. Which page is whose is page_allocator.h's and page_table.h's business.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <vector>

namespace posttrain::core::generate {

struct KvCacheShape {
  int64_t layers = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t page_size = 16;  // tokens per page
  int64_t num_pages = 0;
};

class KvCache {
 public:
  // Allocates the storage (uninitialised: a slot is read only after it was written).
  KvCache(const KvCacheShape& shape, at::TensorOptions options);

  // Pages that fit `bytes` of keys and values for this shape and element size.
  static int64_t pages_for_bytes(const KvCacheShape& shape, int64_t element_size, int64_t bytes);

  const KvCacheShape& shape() const { return shape_; }
  at::Tensor& keys(int64_t layer) { return keys_[layer]; }      // [slots, kv_heads, head_dim]
  at::Tensor& values(int64_t layer) { return values_[layer]; }  // [slots, kv_heads, head_dim]
  // Copies the first `slots` slots of page `from` into page `to`, every layer.
  void copy_page(int32_t from, int32_t to, int64_t slots);

 private:
  KvCacheShape shape_;
  std::vector<at::Tensor> keys_, values_;
};

}  // namespace posttrain::core::generate
