// The training loop every stage shares. It knows nothing of SFT, DPO or reward models: a stage
// hands it a model, a RowDataset of training rows (and optionally eval rows) and a LossFn giving
// the SUMS of a micro-batch's loss terms and metrics (core/train/batch.h). Per optimizer step:
//   1. this rank's rows of the global batch are collated into grad_accum_steps micro-batches;
//   2. the step's loss terms (N) and other counts (C_k) are counted up front, summed over ranks;
//   3. each micro-batch runs forward (bf16 autocast on GPU) and backward of
//      sum / N + Σ_k extra_sums[k] / C_k; its metric sums are added up;
//   4. gradients are summed over ranks (bucketed, core/distributed), clipped, and AdamW steps
//      with the scheduled lr. With training.zero_stage 1 on several ranks (ZeRO-1), each rank
//      keeps AdamW state for, and steps, only the parameters it owns (core/distributed
//      ZeroShard); the owners then broadcast them, so replicas stay identical and the result
//      equals zero_stage 0. The gradient norm still comes from the full all-reduced gradients.
// So the step's loss is (sum over all terms) / N whatever the micro-batch size, number of
// accumulation steps or ranks; so are the metrics, summed over micro-batches and ranks, then
// divided by N (or C_k). Data order is a pure function of the seed and the step.
//
// Output (rank 0 writes): OUT/metrics.jsonl (HF/TRL names, see metrics.h: the stage's data
// summary, step lines with loss, learning_rate, grad_norm, epoch, num_tokens, tokens_per_s, mfu on
// GPU and every loss metric by name, eval lines with eval_loss and eval_<metric>, the final line),
// OUT/checkpoint-<step>/ every save_every steps (an HF model folder in float32 +
// optimizer.safetensors (AdamW moments of every parameter, gathered to rank 0 under ZeRO-1, so the
// layout is that of one process) + trainer_state.json with HF's fields and log_history, the data
// position, schedule, AdamW step count and CPU RNG state), the final model in OUT/ in
// output.save_dtype and OUT/trainer_state.json. Running again resumes from the newest complete
// checkpoint; on CPU the resumed losses equal the uninterrupted run's.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
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
class LossSums;        // core/train/loss_sums.h

class DataParallel;

struct TrainResult {
  int64_t start_step = 0;   // the step the run resumed from (0 = fresh)
  int64_t final_step = 0;   // optimizer steps done in total
  double last_loss = 0.0;   // loss of the last step run (NaN when none ran)
  double last_eval_loss = 0.0;  // NaN when there was no eval
  std::map<std::string, double> last_metrics;       // the loss's metrics of the last step run
  std::map<std::string, double> last_eval_metrics;  // and of the last eval (without eval_)
  bool already_done = false;  // OUT held a finished run; nothing was trained
  // The final line (metrics.h's "done" event, or {"event": "already_done", ...}), which the
  // stage prints: event, step, steps, resumed_from, output, loss and last metrics, eval_loss and
  // eval metrics, epoch, num_tokens, train_runtime, train_samples_per_second,
  // train_steps_per_second, train_loss.
  nlohmann::json summary = nlohmann::json::object();
};

// A loss and its metrics, normalised (core/train/batch.h).
struct LossReport {
  double loss = 0.0;  // NaN when there were no terms
  std::map<std::string, double> metrics;
};

// "auto" → cuda (LOCAL_RANK's device when data-parallel) when LibTorch sees one, else cpu.
at::Device resolve_device(const std::string& name, int local_rank = 0);

// Training FLOPs per token (forward + backward): 6 per matmul weight (the LM head's vocab x hidden,
// or a reward model's 1 x hidden score head) plus attention scores and values
// (12 * layers * heads * head_dim * seq_len / 2 under a causal mask).
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
  // The stage's data summary: written to metrics.jsonl as {"event": "data", "step": S, ...} when
  // the run (or a resumed run, from step S) starts.
  void set_data_summary(nlohmann::json summary) { data_summary_ = std::move(summary); }
  // Progress-bar label ("sft").
  void set_label(std::string label) { label_ = std::move(label); }
  // Declares that the loss sums of a micro-batch are sums of its rows' own terms (SFT; a pair
  // loss whose pairs are kept whole in a row). Each micro-batch must then say so too
  // (MicroBatch::rows_independent) and follow the row-split rule of batch.h, else the trainer
  // throws UsageError rather than split it. On CPU with several intra-op threads the trainer then
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

  // One optimizer step on the rows of `step`; returns {loss, grad_norm}; the loss's metrics are
  // then in last_metrics(). Exposed for tests.
  std::pair<double, double> train_step(int64_t step);
  const std::map<std::string, double>& last_metrics() const;
  // Forward and backward of this rank's micro-batches of `step`, each scaled by the step's term
  // count over all ranks (*global_terms) and counts. Leaves this rank's (unreduced) gradients in
  // the parameters and returns its main loss sum. Exposed for tests.
  double accumulate_gradients(int64_t step, int64_t* global_terms);
  // The model's parameters in Hugging Face name order, and their names.
  const std::vector<at::Tensor>& parameters() const;
  const std::vector<std::string>& parameter_names() const;
  // Loss and metrics over the eval rows (normalised over all of them, across ranks); NaN loss
  // without eval data. evaluate() is its loss.
  LossReport evaluate_report();
  double evaluate() { return evaluate_report().loss; }
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
  // Fractional epochs after `rows` rows of the epoch stream (HF's "epoch").
  double epoch_at(int64_t rows);
  // The "done" line of a run that trained from `start` to `total` in `seconds`.
  nlohmann::json final_line(const TrainResult& r, int64_t start, int64_t total, double seconds,
                            double loss_sum);
  void log_line(const nlohmann::json& line);
  // Forward and backward of `mb` (on the CPU) as `parts` row slices in parallel (see
  // set_rows_independent); adds the gradient of the scaled loss to the parameters' and adds the
  // slices' loss sums into impl_'s step sums.
  void row_split_backward(const MicroBatch& mb, int64_t parts);
  // Sums a loss's packed values over ranks (checking once that ranks agree on the names).
  void reduce_over_ranks(LossSums* sums, bool* checked);

  TrainerOptions options_;
  LlamaModel model_;
  LossFn loss_;
  std::shared_ptr<RowDataset> train_, eval_;
  std::shared_ptr<DataParallel> dp_;
  std::function<void(const std::string&)> save_extra_;
  nlohmann::json run_info_ = nlohmann::json::object();
  nlohmann::json data_summary_;
  std::string label_ = "train";
  bool rows_independent_ = false;
  std::unique_ptr<Impl> impl_;
};

}  // namespace posttrain::core
