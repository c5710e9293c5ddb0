// The seam between the trainer and a stage: rows drawn from a RowDataset in a seeded order,
// collated into MicroBatches of named tensors, and a LossFn that turns one micro-batch into SUMS
// (never means) of its loss terms and metrics. The trainer does every division, over the whole
// optimizer step (all micro-batches, all ranks), so batching never changes the loss.
//
// Normalisation rule. With N = the step's Σ num_terms and C_k = the step's Σ counts[k]:
//   loss          = sum / N  +  Σ_k extra_sums[k] / C_k
//   metric[name]  = Σ metric_sums[name] / N        (or / C_k when metric_norms[name] = k)
// e.g. DPO with an NLL term: num_terms = pairs, counts = {"target_tokens": n}, sum = Σ pair
// losses, extra_sums = {"target_tokens": α · Σ NLL over chosen target tokens}. Eval applies the
// same rule over the whole eval set. A step (or eval set) with N = 0, or a C_k = 0 for a k that
// a loss sum uses, is an error. Every micro-batch of a run carries the same `counts` keys, and
// every LossOutput the same extra_sums / metric_sums names (the trainer sums them across ranks
// by name and refuses a set that changes).
//
// Row-split rule (CPU, Trainer::set_rows_independent). A micro-batch may be run as slices of
// whole rows on several threads. Then every tensor with dim 0 == num_rows is sliced by row, a
// 0-dim tensor goes whole to every slice, and any other tensor makes the trainer refuse. A slice
// carries num_rows only (num_terms, num_tokens and counts are 0): a loss must not read them. The
// trainer also refuses when a batch says its rows are not independent (rows_independent false:
// e.g. a pair laid out as chosen in row i and rejected in row i + B/2).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "common/error.h"
#include "core/model/llama.h"

namespace posttrain::core {

struct MicroBatch {
  std::map<std::string, at::Tensor> tensors;  // stage-defined, e.g. "input_ids" [B, T]
  int64_t num_terms = 0;  // the main loss's terms (target tokens for SFT, pairs for DPO/RM)
  // Other counts a loss normalises by, e.g. {"target_tokens": n} for DPO's NLL term.
  std::map<std::string, int64_t> counts;
  int64_t num_tokens = 0;  // real (non-pad) tokens, for throughput
  int64_t num_rows = 0;
  // Every loss term lies inside one row, so the batch may be split by row (see the file
  // comment). False unless the collator knows it: a pair kept whole in one row is independent.
  bool rows_independent = false;

  // The tensor `name`; throws UsageError naming it (and the tensors present) when absent.
  const at::Tensor& require(const std::string& name) const {
    auto it = tensors.find(name);
    if (it == tensors.end()) throw UsageError(missing_message(name));
    return it->second;
  }
  // The tensor `name`, or an undefined tensor when absent (for optional inputs).
  at::Tensor get(const std::string& name) const {
    auto it = tensors.find(name);
    return it == tensors.end() ? at::Tensor() : it->second;
  }

 private:
  std::string missing_message(const std::string& name) const {
    std::string have;
    for (const auto& [k, t] : tensors) have += (have.empty() ? "" : ", ") + k;
    return "micro-batch has no tensor '" + name + "' (has: " + (have.empty() ? "none" : have) +
           ")";
  }
};

// What a LossFn returns for one micro-batch (see the file comment for how it is normalised).
struct LossOutput {
  LossOutput() = default;
  // A loss with only main terms and no metrics may return its sum directly.
  LossOutput(at::Tensor main_sum) : sum(std::move(main_sum)) {}  // NOLINT(implicit)

  at::Tensor sum;  // float32 scalar under autograd: Σ of the main terms
  // Extra loss sums normalised by another count: extra_sums[k] / (step total of counts[k]) is
  // added to the loss (DPO's rpo NLL term: k = "target_tokens"). Under autograd.
  std::map<std::string, at::Tensor> extra_sums;
  // Detached metric sums (scalars); divided by the step's num_terms, or by the step total of
  // counts[k] when metric_norms[name] = k. Logged under `name` (eval lines: "eval_" + name).
  std::map<std::string, at::Tensor> metric_sums;
  std::map<std::string, std::string> metric_norms;
};

// A row of a given epoch: the trainer reads the data as one stream of epochs.
struct RowRef {
  int64_t epoch = 0;
  int64_t row = 0;
};

class RowDataset {
 public:
  virtual ~RowDataset() = default;
  // Rows in `epoch`; the order of an epoch's rows is a function of the dataset's seed and the
  // epoch only, so a resumed run sees the same rows in the same order.
  virtual int64_t num_rows(int64_t epoch) = 0;
  // The rows collated into one micro-batch on the CPU.
  virtual MicroBatch collate(const std::vector<RowRef>& rows) = 0;
};

// The sums of `batch`'s loss terms and metrics. The batch's tensors are already on the model's
// device; the call runs under bf16 autocast on GPU.
using LossFn = std::function<LossOutput(LlamaModel& model, const MicroBatch& batch)>;

}  // namespace posttrain::core
