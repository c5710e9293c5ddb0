// The LibTorch line of `posttrain --version`: the version compiled against and whether CUDA is
// usable at run time (device count and name of device 0), so a bug report says both.
#include <torch/cuda.h>
#include <torch/version.h>

#include <string>

#include "app/command.h"

namespace posttrain::app {
namespace {

std::string torch_line() {
  std::string s = std::string("LibTorch ") + TORCH_VERSION + ", CUDA ";
  if (!torch::cuda::is_available()) return s + "not available (CPU only)";
  return s + "available: " + std::to_string(torch::cuda::device_count()) + " device(s)";
}

const VersionLine kTorch(torch_line);

}  // namespace
}  // namespace posttrain::app
