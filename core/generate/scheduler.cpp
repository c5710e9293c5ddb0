#include "core/generate/scheduler.h"

#include <algorithm>

#include "common/error.h"

namespace posttrain::core::generate {

Scheduler::Scheduler(SchedulerOptions options) : options_(options) {
  if (options_.max_batch_tokens < 1) throw UsageError("max_batch_tokens must be >= 1");
  if (options_.max_running < 1) throw UsageError("max_running must be >= 1");
}

void Scheduler::enqueue(const PendingGroup& group) { waiting_.push_back(group); }

int64_t Scheduler::running() const {
  int64_t n = static_cast<int64_t>(decoding_.size());
  for (const auto& p : prefilling_) n += p.group.samples;
  return n;
}

StepPlan Scheduler::plan(PageAllocator& alloc) {
  StepPlan plan;
  plan.decode.assign(decoding_.begin(), decoding_.end());
  int64_t budget = options_.max_batch_tokens - static_cast<int64_t>(plan.decode.size());
  // Admit while pages can be reserved and the running limit allows; an over-large group is
  // still admitted alone (nothing else running) so it cannot wait forever.
  int64_t running = this->running();
  while (!waiting_.empty()) {
    const auto& g = waiting_.front();
    if (running > 0 && running + g.samples > options_.max_running) break;
    if (!alloc.reserve(g.reservation)) break;
    running += g.samples;
    plan.admitted.push_back(g.id);
    prefilling_.push_back({g, 0});
    waiting_.pop_front();
  }
  for (auto& p : prefilling_) {
    if (budget <= 0) break;
    const int64_t count = std::min(budget, p.group.prompt_len - p.done);
    plan.prefill.push_back({p.group.id, p.done, count, p.done + count == p.group.prompt_len});
    p.done += count;
    budget -= count;
  }
  return plan;
}

void Scheduler::start_decoding(int64_t group, const std::vector<int64_t>& sequences) {
  prefilling_.erase(std::remove_if(prefilling_.begin(), prefilling_.end(),
                                   [&](const Prefilling& p) { return p.group.id == group; }),
                    prefilling_.end());
  decoding_.insert(sequences.begin(), sequences.end());
}

void Scheduler::retire(int64_t sequence) { decoding_.erase(sequence); }

}  // namespace posttrain::core::generate
