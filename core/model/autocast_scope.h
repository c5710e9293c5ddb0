// Autocast on one device type for a scope: the trainer's forward passes, and the recomputation of
// a checkpointed layer in backward (which runs outside the trainer's scope and must redo the
// forward in the same precision). A scope with `on` false changes nothing.
#pragma once

#include <ATen/autocast_mode.h>

namespace posttrain::core {

class AutocastScope {
 public:
  AutocastScope(at::DeviceType device, bool on, at::ScalarType dtype = at::kBFloat16)
      : device_(device), on_(on) {
    if (!on_) return;
    prev_enabled_ = at::autocast::is_autocast_enabled(device_);
    prev_dtype_ = at::autocast::get_autocast_dtype(device_);
    at::autocast::set_autocast_dtype(device_, dtype);
    at::autocast::set_autocast_enabled(device_, true);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, prev_enabled_);
    at::autocast::set_autocast_dtype(device_, prev_dtype_);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  at::DeviceType device_;
  bool on_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kFloat;
};

}  // namespace posttrain::core
