// One sequence's page table: the pages holding its tokens' keys and values in order (token at
// position j lives in slot pages[j / page_size] * page_size + j % page_size). A fork shares every
// page (the K samples of a prompt); a write into a page someone else still holds copies it
// first (copy-on-write), so only the partly filled last page of a prompt is ever copied.
#pragma once

#include <cstdint>
#include <vector>

#include "core/generate/kv_cache.h"
#include "core/generate/page_allocator.h"

namespace posttrain::core::generate {

class PageTable {
 public:
  const std::vector<int32_t>& pages() const { return pages_; }
  // Pages taken from the sequence's reservation so far.
  int64_t pages_taken() const { return taken_; }

  // Makes positions [begin, end) writable: replaces every shared page overlapping [begin, end)
  // by a private copy of its slots before `begin` (written, and shared until now), then appends
  // pages until they cover `end` positions. Pages come from the allocator's reservation, which
  // the caller holds (pages_to_grow gives the worst case).
  void prepare_write(int64_t begin, int64_t end, PageAllocator& alloc, KvCache& cache);

  // A table sharing every page of this one (each page's count goes up by one).
  PageTable fork(PageAllocator& alloc) const;

  // Drops this table's references.
  void release(PageAllocator& alloc);

  // The slot of position j (j must be covered).
  int64_t slot(int64_t position, int64_t page_size) const {
    return int64_t{pages_[position / page_size]} * page_size + position % page_size;
  }

 private:
  std::vector<int32_t> pages_;
  int64_t taken_ = 0;
};

// Worst-case pages a sequence takes growing from `from` written positions (shared with its
// parent) to `to`: the pages covering [from, to), counting a shared partial page it will copy.
int64_t pages_to_grow(int64_t from, int64_t to, int64_t page_size);

}  // namespace posttrain::core::generate
