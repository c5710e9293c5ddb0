// Bookkeeping of the KV cache's fixed pool of pages (no tensors: kv_cache.h holds those).
// Pages are reference counted, so the K samples of a prompt share its pages; and reserved
// ahead, so a sequence admitted by the scheduler can always grow to its length limit: the
// scheduler reserves a request's worst case before admitting it, sequences take pages from
// their reservation as they grow, and what a finished sequence did not use goes back. The pool
// therefore never runs dry mid-generation and never preempts; a request that does not fit waits.
#pragma once

#include <cstdint>
#include <vector>

namespace posttrain::core::generate {

class PageAllocator {
 public:
  explicit PageAllocator(int64_t num_pages);

  int64_t num_pages() const { return static_cast<int64_t>(refcount_.size()); }
  int64_t free_pages() const { return static_cast<int64_t>(free_.size()); }
  int64_t reserved_pages() const { return reserved_; }
  // Free pages nobody has reserved: what a new reservation can take.
  int64_t available_pages() const { return free_pages() - reserved_; }

  // Reserves n pages; false (and nothing reserved) when fewer are available.
  bool reserve(int64_t n);
  // Returns n reserved pages that were not taken.
  void unreserve(int64_t n);
  // Takes one page out of a reservation (the caller must hold one); its count is 1.
  int32_t take_reserved();
  void retain(int32_t page);
  // Drops one reference; at zero the page is free again.
  void release(int32_t page);
  int32_t refcount(int32_t page) const { return refcount_.at(page); }

 private:
  std::vector<int32_t> refcount_;
  std::vector<int32_t> free_;  // a stack: the most recently freed page is reused first
  int64_t reserved_ = 0;
};

}  // namespace posttrain::core::generate
