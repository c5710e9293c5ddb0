// See fused_adamw.h.
#include "core/train/fused_adamw.h"

#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <torch/optim/adamw.h>

#include "core/train/cpu_parallel.h"

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
    const torch::optim::AdamWOptions* options;
    at::Tensor step;  // float32 scalar: the kernel reads the count, it does not increment it
    std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs;
  };
  std::vector<Bucket> buckets;
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
    for (auto& [step, b] : by_step) {
      b.options = &o;
      b.step = at::full({}, static_cast<double>(step),
                        at::TensorOptions().dtype(at::kFloat).device(b.params.front().device()));
      buckets.push_back(std::move(b));
    }
  }
  const std::optional<at::Tensor> scale =
      grad_scale.defined() ? std::optional<at::Tensor>(grad_scale) : std::nullopt;
  // The kernel on parameters [begin, end) of bucket b (each update is elementwise, so any split
  // of a bucket gives the same result).
  auto run = [&](const Bucket& b, size_t begin, size_t end) {
    auto part = [&](const std::vector<at::Tensor>& v) {
      return std::vector<at::Tensor>(v.begin() + begin, v.begin() + end);
    };
    const std::vector<at::Tensor> steps(end - begin, b.step);
    const auto& o = *b.options;
    at::_fused_adamw_(part(b.params), part(b.grads), part(b.exp_avgs), part(b.exp_avg_sqs),
                      /*max_exp_avg_sqs=*/{}, steps, o.lr(), std::get<0>(o.betas()),
                      std::get<1>(o.betas()), o.weight_decay(), o.eps(), /*amsgrad=*/false,
                      /*maximize=*/false, scale);
  };
  const bool cpu = !buckets.empty() && buckets.front().params.front().is_cpu();
  const int64_t threads = coarse_threads();
  if (!cpu || threads <= 1) {
    for (const auto& b : buckets) run(b, 0, b.params.size());
    return;
  }
  // CPU: one parallel region over runs of parameters of about equal size, one run per thread,
  // instead of the kernel's own split of every parameter (a fork/join per tensor).
  std::vector<std::pair<size_t, size_t>> items;  // (bucket, parameter)
  std::vector<int64_t> sizes;
  for (size_t k = 0; k < buckets.size(); ++k) {
    for (size_t i = 0; i < buckets[k].params.size(); ++i) {
      items.emplace_back(k, i);
      sizes.push_back(buckets[k].params[i].numel());
    }
  }
  for_each_run(balanced_runs(sizes, threads), [&](int64_t begin, int64_t end) {
    // Consecutive items of one bucket go to the kernel together.
    for (int64_t i = begin; i < end;) {
      int64_t j = i + 1;
      while (j < end && items[j].first == items[i].first) ++j;
      run(buckets[items[i].first], items[i].second, items[j - 1].second + 1);
      i = j;
    }
  });
}

}  // namespace posttrain::core
