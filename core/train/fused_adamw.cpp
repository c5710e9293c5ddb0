// See fused_adamw.h.
#include "core/train/fused_adamw.h"

#include <map>
#include <memory>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/optim/adamw.h>

namespace posttrain::core {

torch::optim::AdamWParamState* find_adamw_state(torch::optim::AdamW& optimizer,
                                                 const at::Tensor& param) {
  auto& table = optimizer.state();
  auto it = table.find(param.unsafeGetTensorImpl());
  return it == table.end() ? nullptr
                           : static_cast<torch::optim::AdamWParamState*>(it->second.get());
}

void fused_adamw_step(torch::optim::AdamW& optimizer, const at::Tensor& grad_scale) {
  at::NoGradGuard no_grad;
  // One kernel call per bucket of parameters sharing a step count: all of them share it in normal
  // training, but a parameter that first got a gradient late (or a resumed state) may lag behind.
  struct Bucket {
    std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs;
  };
  for (auto& group : optimizer.param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    if (o.amsgrad()) throw std::runtime_error("fused_adamw_step: amsgrad is not supported");
    std::map<int64_t, Bucket> by_step;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto* s = find_adamw_state(optimizer, p);
      if (s == nullptr) {
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->step(0);
        fresh->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        s = fresh.get();
        optimizer.state()[p.unsafeGetTensorImpl()] = std::move(fresh);
      }
      s->step(s->step() + 1);
      Bucket& b = by_step[s->step()];
      b.params.push_back(p);
      b.grads.push_back(p.grad());
      b.exp_avgs.push_back(s->exp_avg());
      b.exp_avg_sqs.push_back(s->exp_avg_sq());
    }
    for (const auto& [step, b] : by_step) {
      // The kernel reads the step count from a float tensor per parameter (it does not
      // increment it); one scalar shared by the bucket is enough.
      const auto t = at::full({}, static_cast<double>(step), at::TensorOptions()
                                                                 .dtype(at::kFloat)
                                                                 .device(b.params.front().device()));
      const std::vector<at::Tensor> steps(b.params.size(), t);
      at::_fused_adamw_(b.params, b.grads, b.exp_avgs, b.exp_avg_sqs, /*max_exp_avg_sqs=*/{},
                        steps, o.lr(), std::get<0>(o.betas()), std::get<1>(o.betas()),
                        o.weight_decay(), o.eps(), /*amsgrad=*/false, /*maximize=*/false,
                        grad_scale.defined() ? std::optional<at::Tensor>(grad_scale)
                                             : std::nullopt);
    }
  }
}

}  // namespace posttrain::core
