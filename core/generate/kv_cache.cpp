#include "core/generate/kv_cache.h"

#include <ATen/ATen.h>

namespace posttrain::core::generate {

KvCache::KvCache(const KvCacheShape& shape, at::TensorOptions options) : shape_(shape) {
  const int64_t slots = shape.num_pages * shape.page_size;
  for (int64_t l = 0; l < shape.layers; ++l) {
    keys_.push_back(at::empty({slots, shape.kv_heads, shape.head_dim}, options));
    values_.push_back(at::empty({slots, shape.kv_heads, shape.head_dim}, options));
  }
}

int64_t KvCache::pages_for_bytes(const KvCacheShape& shape, int64_t element_size, int64_t bytes) {
  const int64_t per_page =
      2 * shape.layers * shape.page_size * shape.kv_heads * shape.head_dim * element_size;
  return per_page > 0 ? bytes / per_page : 0;
}

void KvCache::copy_page(int32_t from, int32_t to, int64_t slots) {
  const int64_t ps = shape_.page_size;
  for (int64_t l = 0; l < shape_.layers; ++l) {
    keys_[l]
        .narrow(0, int64_t{to} * ps, slots)
        .copy_(keys_[l].narrow(0, int64_t{from} * ps, slots));
    values_[l]
        .narrow(0, int64_t{to} * ps, slots)
        .copy_(values_[l].narrow(0, int64_t{from} * ps, slots));
  }
}

}  // namespace posttrain::core::generate
