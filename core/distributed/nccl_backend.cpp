// NCCL process group construction, compiled in only where LibTorch was found with CUDA
// (USE_C10D_NCCL) and nccl.h is on the include path (the wheel's nvidia-nccl package; see
// core/CMakeLists.txt). Elsewhere nccl_available() is false and CUDA jobs get a clear error.
#include <string>

#include "common/error.h"
#include "core/distributed/c10d_backends.h"

#if defined(USE_C10D_NCCL) && __has_include(<nccl.h>)
#define POSTTRAIN_HAVE_NCCL 1
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace posttrain::core::detail {

#ifdef POSTTRAIN_HAVE_NCCL

bool nccl_available() { return true; }

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size,
                                                    std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
}

#else

bool nccl_available() { return false; }

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>&, int,
                                                    int, std::chrono::milliseconds) {
  throw UsageError(
      "data parallel on CUDA needs NCCL, and this build of posttrain has none (it was built "
      "without CUDA LibTorch or without nccl.h); train on CPU (Gloo) or rebuild on a CUDA "
      "machine");
}

#endif

}  // namespace posttrain::core::detail
