// The training loop every stage shares. It knows nothing of SFT, DPO or reward models: a stage
// hands it a model, a RowDataset of training rows (and optionally eval rows) and a LossFn giving
// the SUM of a micro-batch's loss terms. Per optimizer step:
//   1. this rank's rows of the global batch are collated into grad_accum_steps micro-batches;
//   2. the step's loss terms are counted up front and summed over ranks (N);
//   3. each micro-batch runs forward (bf16 autocast on GPU) and backward of loss_sum / N;
//   4. gradients are summed over ranks (bucketed, core/distributed), clipped, and AdamW steps
//      with the scheduled lr. With training.zero_stage 1 on several ranks (ZeRO-1), each rank
//      keeps AdamW state for, and steps, only the parameters it owns (core/distributed
//      ZeroShard); the owners then broadcast them, so replicas stay identical and the result
//      equals zero_stage 0. The gradient norm still comes from the full all-reduced gradients.
// So the step's loss is (sum over all target terms) / N whatever the micro-batch size, number of
// accumulation steps or ranks. Data order is a pure function of the seed and the step.
//
// Output (rank 0 writes): OUT/metrics.jsonl, OUT/checkpoint-<step>/ every save_every steps (an
// HF model folder in float32 + optimizer.safetensors (AdamW moments of every parameter, gathered
// to rank 0 under ZeRO-1, so the layout is that of one process) + trainer_state.json with
// the step, data position, schedule, AdamW step count and CPU RNG state), and the final model in
// OUT/ in output.save_dtype. Running again resumes from the newest complete checkpoint; on CPU
// the resumed losses equal the uninterrupted run's.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/model/llama.h"
#include "core/train/batch.h"
#include "core/train/trainer_options.h"

namespace torch::optim {
class AdamW;
}

namespace posttrain::core {

struct TrainingState;  // core/train/trainer_state.h

class DataParallel;

struct TrainResult {
  int64_t start_step = 0;   // the step the run resumed from (0 = fresh)
  int64_t final_step = 0;   // optimizer steps done in total
  double last_loss = 0.0;   // loss of the last step run (NaN when none ran)
  double last_eval_loss = 0.0;  // NaN when there was no eval
  bool already_done = false;  // OUT held a finished run; nothing was trained
};

// "auto" → cuda (LOCAL_RANK's device when data-parallel) when LibTorch sees one, else cpu.
at::Device resolve_device(const std::string& name, int local_rank = 0);

// Training FLOPs per token (forward + backward): 6 per matmul weight plus attention scores and
// values (12 * layers * heads * head_dim * seq_len / 2 under a causal mask).
double train_flops_per_token(const LlamaConfig& config, int64_t seq_len);

class Trainer {
 public:
  // `model` must already sit on its training device in float32. `eval` may be null. `dp` may be
  // null (one process) or a DataParallel from DataParallel::init.
  Trainer(TrainerOptions options, LlamaModel model, LossFn loss,
          std::shared_ptr<RowDataset> train, std::shared_ptr<RowDataset> eval,
          std::shared_ptr<DataParallel> dp = nullptr);
  ~Trainer();

  // Writes stage files (tokenizer, ...) into every checkpoint folder and the final folder.
  void set_save_extra(std::function<void(const std::string& dir)> fn) { save_extra_ = fn; }
  // A JSON object stored in trainer_state.json and checked on resume (e.g. the resolved config).
  void set_run_info(nlohmann::json info) { run_info_ = std::move(info); }
  // Progress-bar label ("sft").
  void set_label(std::string label) { label_ = std::move(label); }
  // Declares that the loss sum of a micro-batch is the sum of its rows' own terms (SFT; not a
  // loss that pairs rows, like DPO's). On CPU with several intra-op threads the trainer then
  // runs each micro-batch as one slice of rows per thread, ops single-threaded inside, and sums
  // the slices' gradients in slice order: one fork/join per micro-batch instead of one per op.
  // Only when the micro-batch has at least one row per thread and the other slices' gradients
  // (threads - 1 copies of the parameters) take at most 1 GiB.
  void set_rows_independent(bool on) { rows_independent_ = on; }

  // Optimizer steps of the whole run (max_steps, or epochs over the rows / global batch).
  int64_t total_steps();
  int64_t global_batch_rows() const;

  // Runs (or resumes) training to total_steps() and writes the final model.
  TrainResult run();

  // One optimizer step on the rows of `step`; returns {loss, grad_norm}. Exposed for tests.
  std::pair<double, double> train_step(int64_t step);
  // Forward and backward of this rank's micro-batches of `step`, each loss sum divided by the
  // step's target count over all ranks (*global_targets). Leaves this rank's (unreduced)
  // gradients in the parameters and returns its loss sum. Exposed for tests.
  double accumulate_gradients(int64_t step, int64_t* global_targets);
  // The model's parameters in Hugging Face name order, and their names.
  const std::vector<at::Tensor>& parameters() const;
  const std::vector<std::string>& parameter_names() const;
  // Mean loss over the eval rows (sum / terms across ranks); NaN without eval data.
  double evaluate();
  LlamaModel& model() { return model_; }
  // This rank's AdamW: over all parameters, or only its own shard under ZeRO-1 (it then holds
  // no exp_avg / exp_avg_sq for the others). Exposed for tests.
  torch::optim::AdamW& optimizer();
  // Whether this trainer shards optimizer state (zero_stage 1 and more than one rank).
  bool zero_sharded() const;

 private:
  struct Impl;
  std::vector<RowRef> rows_of_step(int64_t step);
  void save_checkpoint(int64_t step);
  // What trainer_state.json records after `step` optimizer steps (all but the lr).
  TrainingState training_state(int64_t step);
  int64_t try_resume();
  void log_line(const nlohmann::json& line);
  // Forward and backward of `mb` (on the CPU) as `parts` row slices in parallel (see
  // set_rows_independent); adds the gradient of loss_sum / denom to the parameters' and returns
  // the loss sum (a float64 scalar).
  at::Tensor row_split_backward(const MicroBatch& mb, int64_t parts, double denom);

  TrainerOptions options_;
  LlamaModel model_;
  LossFn loss_;
  std::shared_ptr<RowDataset> train_, eval_;
  std::shared_ptr<DataParallel> dp_;
  std::function<void(const std::string&)> save_extra_;
  nlohmann::json run_info_ = nlohmann::json::object();
  std::string label_ = "train";
  bool rows_independent_ = false;
  std::unique_ptr<Impl> impl_;
};

}  // namespace posttrain::core
