// One AdamW step through ATen's fused multi-tensor kernel (`at::_fused_adamw_`, the kernel behind
// torch.optim.AdamW(fused=True)), on CPU and CUDA. LibTorch's C++ AdamW runs about eight
// elementwise passes per parameter; the fused kernel reads and writes each element once, which on
// a GPU is the difference between ~100 ms and ~10 ms per step for a 1B model.
//
// The torch::optim::AdamW object stays the owner of the state (exp_avg, exp_avg_sq, step per
// parameter, keyed by TensorImpl as LibTorch keys it), so checkpoints and resume are unchanged; only the update
// runs here. The maths is AdamW's: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
#pragma once

#include <ATen/core/Tensor.h>

namespace torch::optim {
class AdamW;
struct AdamWParamState;
}

namespace posttrain::core {

// Applies one step to every parameter that has a gradient, group by group (each group's lr,
// betas, eps and weight decay). Parameters of one group must share a device and dtype.
// grad_scale (optional float32 scalar on the parameters' device): the kernel uses grad /
// grad_scale in place of grad, which is how gradient clipping is folded into the update
// without a separate pass over the gradients (grad_scale = max(1, norm / max_norm)).
void fused_adamw_step(torch::optim::AdamW& optimizer, const at::Tensor& grad_scale = {});

// The optimizer's state for `param` (exp_avg, exp_avg_sq, step), or null before its first step.
torch::optim::AdamWParamState* find_adamw_state(torch::optim::AdamW& optimizer,
                                                 const at::Tensor& param);

}  // namespace posttrain::core
