// See fused_adamw.h.
#include "core/train/fused_adamw.h"

#include <map>
#include <memory>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/optim/adamw.h>

namespace posttrain::core {

void fused_adamw_step(torch::optim::AdamW& optimizer, const at::Tensor& grad_scale) {
  at::NoGradGuard no_grad;
  auto& table = optimizer.state();
  for (auto& group : optimizer.param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    if (o.amsgrad()) throw std::runtime_error("fused_adamw_step: amsgrad is not supported");
    // Parameters are bucketed by their step count: all of them share it in normal training, but a
    // parameter that first got a gradient late (or a resumed state) may lag behind.
    std::map<int64_t, std::vector<size_t>> by_step;
    std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs;
    std::vector<torch::optim::AdamWParamState*> states;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto* key = p.unsafeGetTensorImpl();
      auto it = table.find(key);
      if (it == table.end()) {
        auto s = std::make_unique<torch::optim::AdamWParamState>();
        s->step(0);
        s->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
        s->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        it = table.emplace(key, std::move(s)).first;
      }
      auto* s = static_cast<torch::optim::AdamWParamState*>(it->second.get());
      s->step(s->step() + 1);
      by_step[s->step()].push_back(params.size());
      params.push_back(p);
      grads.push_back(p.grad());
      exp_avgs.push_back(s->exp_avg());
      exp_avg_sqs.push_back(s->exp_avg_sq());
    }
    for (const auto& [step, idx] : by_step) {
      std::vector<at::Tensor> ps, gs, ms, vs;
      for (size_t i : idx) {
        ps.push_back(params[i]);
        gs.push_back(grads[i]);
        ms.push_back(exp_avgs[i]);
        vs.push_back(exp_avg_sqs[i]);
      }
      // The kernel reads the step count from a float tensor per parameter (it does not
      // increment it); one scalar shared by the bucket is enough.
      const auto t = at::full({}, static_cast<double>(step),
                              at::TensorOptions().dtype(at::kFloat).device(ps.front().device()));
      const std::vector<at::Tensor> steps(ps.size(), t);
      at::_fused_adamw_(ps, gs, ms, vs, /*max_exp_avg_sqs=*/{}, steps, o.lr(),
                        std::get<0>(o.betas()), std::get<1>(o.betas()), o.weight_decay(), o.eps(),
                        /*amsgrad=*/false, /*maximize=*/false,
                        grad_scale.defined() ? std::optional<at::Tensor>(grad_scale)
                                             : std::nullopt);
    }
  }
}

}  // namespace posttrain::core
