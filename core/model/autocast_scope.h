// Autocast on one device type for a scope: the trainer's forward passes, and the recomputation of
// a checkpointed layer in backward (which runs outside the trainer's scope and must redo the
// forward in the same precision). A scope with `on` false changes nothing. Also the one question
// the model's layers ask of autocast: which dtype, if any, it computes in on a device.
#pragma once

#include <ATen/autocast_mode.h>

#include <optional>

namespace posttrain::core {

// The autocast dtype on `device` while autocast is on there, else nullopt.
inline std::optional<at::ScalarType> active_autocast_dtype(at::DeviceType device) {
  if (!at::autocast::is_autocast_available(device) ||
      !at::autocast::is_autocast_enabled(device)) {
    return std::nullopt;
  }
  return at::autocast::get_autocast_dtype(device);
}

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
