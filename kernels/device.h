// Whether this build carries our CUDA kernels, and the glue the wrappers share (the current
// stream as void*, dtype codes). Only kernels/*.cpp include this.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdlib>

#ifdef POSTTRAIN_HAS_CUDA_KERNELS
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "kernels/cuda/launch.h"
#endif

namespace posttrain::kernels {

// True when this build has our kernels (POSTTRAIN_CUDA=ON) and the environment does not set
// POSTTRAIN_NO_CUDA_KERNELS (for A/B runs against the ATen path).
inline bool cuda_kernels_on() {
#ifdef POSTTRAIN_HAS_CUDA_KERNELS
  static const bool disabled = std::getenv("POSTTRAIN_NO_CUDA_KERNELS") != nullptr;
  return !disabled;
#else
  return false;
#endif
}

// Whether our kernels take this dtype (float32 or bf16); the wrappers send others to ATen.
inline bool kernel_dtype(at::ScalarType t) { return t == at::kFloat || t == at::kBFloat16; }

// True when `t` is a CUDA tensor and our kernels are on.
inline bool use_cuda_kernels(const at::Tensor& t) { return t.is_cuda() && cuda_kernels_on(); }

#ifdef POSTTRAIN_HAS_CUDA_KERNELS
inline void* stream_of(const at::Tensor& t) {
  return static_cast<void*>(at::cuda::getCurrentCUDAStream(t.get_device()).stream());
}
// Throws (a c10::Error naming the CUDA error) when the launch just made failed, as ATen's own
// kernels do; otherwise a bad launch leaves its outputs unwritten and the error surfaces later in
// an unrelated op, or never.
inline void check_launch() { C10_CUDA_KERNEL_LAUNCH_CHECK(); }

inline cuda::DType dtype_of(const at::Tensor& t) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16,
              "posttrain CUDA kernels take float32 or bfloat16, got ", t.scalar_type());
  return t.scalar_type() == at::kFloat ? cuda::DType::kFloat32 : cuda::DType::kBFloat16;
}
#endif

}  // namespace posttrain::kernels
