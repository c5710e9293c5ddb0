// A file descriptor closed when its owner goes out of scope.
#pragma once

#include <unistd.h>

namespace posttrain {

struct UniqueFd {
  int fd = -1;

  UniqueFd() = default;
  explicit UniqueFd(int f) : fd(f) {}
  UniqueFd(UniqueFd&& other) noexcept : fd(other.fd) { other.fd = -1; }
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd = other.fd;
      other.fd = -1;
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  void close() { reset(); }
  // Gives up ownership: the caller closes the returned descriptor.
  int release() {
    const int f = fd;
    fd = -1;
    return f;
  }
};

}  // namespace posttrain
