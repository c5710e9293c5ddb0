// Attention of a step's query tokens over keys and values kept in KV-cache pages. A step holds
// several sequences' runs of consecutive tokens (decode: one token; prefill: a chunk), packed
// into one flat batch; the run's tokens' own keys are already in the cache, so a token at
// position p attends to positions 0..p of its sequence.
// Two paths: on CPU float32, runs of few tokens (decode) go through a loop over (token, kv head)
// that reads the pages in place; longer runs (prefill chunks), and every run on other devices or
// dtypes, gather their keys and values by slot and call at::scaled_dot_product_attention with
// the causal-with-offset mask, so GEMMs do the work.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace posttrain::core::generate {

// One sequence's run of query tokens in the step.
struct AttentionRun {
  int64_t first_token = 0;                      // index of its first token in the flat batch
  int64_t count = 0;                            // tokens in the run
  int64_t start_pos = 0;                        // position of its first token
  const std::vector<int32_t>* pages = nullptr;  // the sequence's page table (covers the run)
};

// Per-step tensors the gathered path needs, built once and shared by every layer. Gathered
// single-token runs (decode steps off the CPU loop) are batched into one attention call over
// keys padded to the longest context.
class AttentionPlan {
 public:
  // cpu_loop = false sends every run through the gathered path (tests compare the two).
  AttentionPlan(std::vector<AttentionRun> runs, int64_t page_size, at::Device device,
                at::ScalarType dtype, bool cpu_loop = true);
  const std::vector<AttentionRun>& runs() const { return runs_; }
  int64_t page_size() const { return page_size_; }
  // Runs with at most this many tokens take the CPU loop (float32 CPU only).
  static constexpr int64_t kLoopMaxTokens = 8;
  // For run i taking the gathered path: key slots [ctx] int64 and mask [count, ctx] bool on the
  // device (undefined for runs of the loop path on CPU).
  const at::Tensor& key_slots(size_t i) const { return slots_[i]; }
  const at::Tensor& mask(size_t i) const { return masks_[i]; }
  bool loop_path(size_t i) const { return !slots_[i].defined() && !batched_[i]; }
  bool batched(size_t i) const { return batched_[i]; }
  // The batched decode runs: query token per run [D], key slots [D, max_ctx] (padding repeats
  // the run's first key, masked), mask [D, 1, 1, max_ctx]. Undefined when there are none.
  const at::Tensor& decode_tokens() const { return decode_tokens_; }
  const at::Tensor& decode_slots() const { return decode_slots_; }
  const at::Tensor& decode_mask() const { return decode_mask_; }

 private:
  std::vector<AttentionRun> runs_;
  int64_t page_size_;
  std::vector<at::Tensor> slots_, masks_;
  std::vector<bool> batched_;
  at::Tensor decode_tokens_, decode_slots_, decode_mask_;
};

// q [N, nh, hd]; keys, values [slots, nkv, hd] (one layer of the cache, the runs' tokens
// written); returns [N, nh, hd] in q's dtype. Query head h reads kv head h / (nh / nkv).
at::Tensor paged_attention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                           const AttentionPlan& plan, double scale);

}  // namespace posttrain::core::generate
