// Continuous batching: which tokens run in the next step. Every decoding sequence gets its next
// token; what is left of the step's token budget goes to prompt prefill in chunks, oldest
// admitted prompt first; waiting prompts are admitted (first come, first served) while the page
// allocator can reserve their worst case and the running limit allows their samples. A prompt
// that cannot be admitted waits until finished sequences return pages; nothing is preempted.
// The scheduler only counts: the engine owns sequences, pages and tokens.
#pragma once

#include <cstdint>
#include <deque>
#include <set>
#include <vector>

#include "core/generate/page_allocator.h"

namespace posttrain::core::generate {

struct SchedulerOptions {
  int64_t max_batch_tokens = 2048;  // tokens per step (decode tokens + prefill chunks)
  int64_t max_running = 256;        // sequences holding cache (decoding or about to)
};

// A prompt waiting for admission: its samples and the pages its worst case needs.
struct PendingGroup {
  int64_t id = 0;
  int64_t prompt_len = 0;
  int64_t samples = 1;
  int64_t reservation = 0;
};

struct PrefillChunk {
  int64_t group = 0;
  int64_t begin = 0;  // first prompt position of the chunk
  int64_t count = 0;
  bool last = false;  // completes the prompt: its last token's logits start the samples
};

struct StepPlan {
  std::vector<int64_t> decode;        // sequence ids, one token each
  std::vector<PrefillChunk> prefill;  // in admission order
  std::vector<int64_t> admitted;      // groups admitted (reserved) by this plan
  bool empty() const { return decode.empty() && prefill.empty(); }
};

class Scheduler {
 public:
  // Throws UsageError when max_batch_tokens < 1 or max_running < 1.
  explicit Scheduler(SchedulerOptions options);

  void enqueue(const PendingGroup& group);
  // The next step. Reserves the pages of the groups it admits (alloc.reserve).
  StepPlan plan(PageAllocator& alloc);
  // A prompt's prefill finished: its group leaves prefill and these sequences decode.
  void start_decoding(int64_t group, const std::vector<int64_t>& sequences);
  // A sequence finished (or never needed to decode: it may be absent).
  void retire(int64_t sequence);

  bool idle() const { return waiting_.empty() && prefilling_.empty() && decoding_.empty(); }
  int64_t waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t running() const;

 private:
  struct Prefilling {
    PendingGroup group;
    int64_t done = 0;  // prompt positions prefilled
  };
  SchedulerOptions options_;
  std::deque<PendingGroup> waiting_;
  std::deque<Prefilling> prefilling_;
  std::set<int64_t> decoding_;
};

}  // namespace posttrain::core::generate
