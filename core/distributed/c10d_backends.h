// Internal to core/distributed: builds c10d backends behind plain functions, so only the files
// that define them include the Gloo / NCCL headers (Gloo's come from libgloo-dev, NCCL's from
// the torch wheel's nvidia-nccl package and exist only in CUDA builds).
#pragma once

#include <chrono>
#include <string>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

namespace posttrain::core::detail {

// Gloo over TCP. The transport binds to GLOO_SOCKET_IFNAME when set, to loopback when
// master_addr is a loopback address, and to the host's default interface otherwise.
c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size,
                                                    const std::string& master_addr,
                                                    std::chrono::milliseconds timeout);

// Whether this build carries ProcessGroupNCCL.
bool nccl_available();

// NCCL on the current CUDA device. Throws UsageError when nccl_available() is false.
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size,
                                                    std::chrono::milliseconds timeout);

}  // namespace posttrain::core::detail
