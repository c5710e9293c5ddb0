// What the trainer consumes, independent of the stage: rows drawn from a RowDataset in a seeded
// order, collated into MicroBatches of named tensors, and a LossFn that turns one micro-batch
// into the SUM of its loss terms. The trainer divides by the number of loss terms of the whole
// optimizer step (all micro-batches, all ranks), so batching never changes the loss.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/model/llama.h"

namespace posttrain::core {

struct MicroBatch {
  std::map<std::string, at::Tensor> tensors;  // stage-defined, e.g. "input_ids" [B, T]
  int64_t num_targets = 0;  // loss terms (target tokens for SFT, pairs for DPO)
  int64_t num_tokens = 0;   // real (non-pad) tokens, for throughput
  int64_t num_rows = 0;

  // The tensor `name`, or an undefined tensor when absent.
  at::Tensor get(const std::string& name) const {
    auto it = tensors.find(name);
    return it == tensors.end() ? at::Tensor() : it->second;
  }
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

// The SUM of the loss terms of `batch` (a float32 scalar under autograd). The batch's tensors
// are already on the model's device.
using LossFn = std::function<at::Tensor(LlamaModel& model, const MicroBatch& batch)>;

}  // namespace posttrain::core
