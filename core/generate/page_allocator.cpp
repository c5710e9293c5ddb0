#include "core/generate/page_allocator.h"

#include <stdexcept>
#include <string>

namespace posttrain::core::generate {

PageAllocator::PageAllocator(int64_t num_pages) : refcount_(num_pages, 0) {
  if (num_pages <= 0) throw std::invalid_argument("PageAllocator: num_pages must be positive");
  free_.reserve(num_pages);
  for (int64_t p = num_pages - 1; p >= 0; --p) free_.push_back(static_cast<int32_t>(p));
}

bool PageAllocator::reserve(int64_t n) {
  if (n < 0 || n > available_pages()) return false;
  reserved_ += n;
  return true;
}

void PageAllocator::unreserve(int64_t n) {
  if (n < 0 || n > reserved_) throw std::logic_error("PageAllocator: unreserve beyond reserved");
  reserved_ -= n;
}

int32_t PageAllocator::take_reserved() {
  if (reserved_ <= 0 || free_.empty()) {
    throw std::logic_error("PageAllocator: take_reserved without a reservation");
  }
  --reserved_;
  const int32_t page = free_.back();
  free_.pop_back();
  refcount_[page] = 1;
  return page;
}

void PageAllocator::retain(int32_t page) {
  if (refcount_.at(page) <= 0) throw std::logic_error("PageAllocator: retain of a free page");
  ++refcount_[page];
}

void PageAllocator::release(int32_t page) {
  if (refcount_.at(page) <= 0) {
    throw std::logic_error("PageAllocator: release of free page " + std::to_string(page));
  }
  if (--refcount_[page] == 0) free_.push_back(page);
}

}  // namespace posttrain::core::generate
