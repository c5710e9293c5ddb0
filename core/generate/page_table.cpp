#include "core/generate/page_table.h"

#include <algorithm>

namespace posttrain::core::generate {

void PageTable::prepare_write(int64_t begin, int64_t end, PageAllocator& alloc, KvCache& cache) {
  const int64_t ps = cache.shape().page_size;
  if (end <= begin) return;
  // Shared pages the write touches: copy the slots before `begin` (already written, shared).
  for (int64_t i = begin / ps; i < static_cast<int64_t>(pages_.size()) && i * ps < end; ++i) {
    if (alloc.refcount(pages_[i]) > 1) {
      const int32_t fresh = alloc.take_reserved();
      ++taken_;
      const int64_t keep = std::max<int64_t>(0, std::min(begin - i * ps, ps));
      if (keep > 0) cache.copy_page(pages_[i], fresh, keep);
      alloc.release(pages_[i]);
      pages_[i] = fresh;
    }
  }
  while (static_cast<int64_t>(pages_.size()) * ps < end) {
    pages_.push_back(alloc.take_reserved());
    ++taken_;
  }
}

PageTable PageTable::fork(PageAllocator& alloc) const {
  PageTable t;
  t.pages_ = pages_;
  for (int32_t p : pages_) alloc.retain(p);
  return t;
}

void PageTable::release(PageAllocator& alloc) {
  for (int32_t p : pages_) alloc.release(p);
  pages_.clear();
}

int64_t pages_to_grow(int64_t from, int64_t to, int64_t page_size) {
  if (to <= from) return 0;
  const int64_t first = from / page_size;                 // the page position `from` is in
  const int64_t last = (to + page_size - 1) / page_size;  // pages covering [0, to)
  return last - first;
}

}  // namespace posttrain::core::generate
