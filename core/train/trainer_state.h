// Training state on disk, so a run resumes exactly. A checkpoint folder OUT/checkpoint-<step>/
// holds the model as a Hugging Face folder (float32, loadable by transformers), the stage's extra
// files (tokenizer), optimizer.safetensors (AdamW exp_avg / exp_avg_sq per parameter, float32,
// named "<param>.exp_avg" / "<param>.exp_avg_sq") and trainer_state.json. It is written to
// checkpoint-<step>.tmp and renamed, so a folder without the .tmp suffix and with
// trainer_state.json is complete. OUT/trainer_state.json, written last, marks a finished run.
//
// trainer_state.json holds Hugging Face Trainer's fields under HF's names (global_step,
// max_steps, epoch, num_train_epochs, num_input_tokens_seen, logging_steps, eval_steps,
// save_steps, train_batch_size, log_history: the metrics.jsonl lines so far) beside ours (global
// batch, data position, schedule, AdamW step count and ZeRO stage, CPU RNG state as hex, run
// info). Files written before HF's names ("step", "total_steps") still load.
//
// With ZeRO-1 the moments live on their owners; the trainer gathers them to rank 0, which writes
// the same optimizer.safetensors as a replicated run. The layout therefore does not depend on
// the world size or the ZeRO stage: on resume each rank loads the moments of the parameters in
// its own optimizer and ignores the rest.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "core/model/llama.h"
#include "core/train/schedule.h"

namespace torch::optim {
class AdamW;
}

namespace posttrain::core {

struct TrainingState {
  int64_t step = 0;               // optimizer steps completed (HF's global_step)
  int64_t total_steps = 0;        // HF's max_steps
  int64_t global_batch_rows = 0;  // rows per optimizer step over all ranks
  int64_t world_size = 1;
  int64_t rows_consumed = 0;      // data position: rows of the epoch stream used so far
  int64_t adam_step = 0;          // AdamW's per-parameter step count
  int64_t zero_stage = 0;         // training.zero_stage of the run that wrote it (informative)
  double lr = 0;                  // lr of the last step run
  LrSchedule schedule;
  std::string rng_cpu_hex;        // at::getDefaultCPUGenerator() state
  nlohmann::json run_info = nlohmann::json::object();
  // Hugging Face TrainerState's fields besides global_step / max_steps (written; only
  // num_input_tokens_seen is read back, to continue the metrics' num_tokens on resume).
  double epoch = 0;                   // fractional epochs done
  int64_t num_train_epochs = 0;       // epochs the run reaches (started ones count)
  int64_t num_input_tokens_seen = 0;  // real tokens trained on, all ranks
  int64_t logging_steps = 0, eval_steps = 0, save_steps = 0;
  int64_t train_batch_size = 0;       // rows per micro-batch on one rank (HF's per-device size)
  nlohmann::json log_history = nlohmann::json::array();

  nlohmann::json to_json() const;
  static TrainingState from_json(const nlohmann::json& j, const std::string& source);
};

void write_training_state(const std::string& path, const TrainingState& state);
// The CPU generator's state as hex (TrainingState::rng_cpu_hex).
std::string cpu_rng_state_hex();
TrainingState read_training_state(const std::string& path);

// The step of a folder named "checkpoint-<digits>", or nullopt for any other name, including a
// step past INT64_MAX ("checkpoint-99999999999999999999" is not a checkpoint of ours).
std::optional<int64_t> checkpoint_step(const std::string& folder_name);

// Complete OUT/checkpoint-<step>/ folders (trainer_state.json present), newest first.
std::vector<std::string> complete_checkpoints(const std::string& out_dir);
// The newest complete OUT/checkpoint-<step>/ folder, or "" when there is none.
std::string newest_checkpoint(const std::string& out_dir);

// AdamW moments as written to optimizer.safetensors: "<name>.exp_avg" / "<name>.exp_avg_sq"
// tensors, and the step count they belong to.
struct OptimizerMoments {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  int64_t adam_step = 0;
};

// The moments `optimizer` holds for `params` (named by `names`, same order); parameters without
// state (never stepped, or another rank's under ZeRO-1) are left out.
OptimizerMoments optimizer_moments(torch::optim::AdamW& optimizer,
                                   const std::vector<std::string>& names,
                                   const std::vector<at::Tensor>& params);

// Writes OUT/checkpoint-<state.step>/ (see the file comment) with the given moments. Fills
// state's adam_step and RNG. keep > 0 removes all but the newest `keep` checkpoints.
void save_training_checkpoint(const std::string& out_dir, TrainingState state,
                              LlamaModelImpl& model, const OptimizerMoments& moments,
                              const std::function<void(const std::string&)>& save_extra,
                              int64_t keep);

// What a resume may do when a checkpoint is not exactly what the run needs.
struct ResumeOptions {
  // optimizer.safetensors lacking some parameters' moments (they restart from zero) or holding
  // moments of parameters the model does not have: an error unless this is set, then a warning
  // on stderr saying the resume is not exact.
  bool allow_inexact = false;
  // The newest checkpoint is corrupt (unreadable state, weights or moments): an error naming it
  // and the previous complete one unless this is set, then that previous one is loaded.
  bool fall_back_to_previous = false;
};

// Restores weights, AdamW moments and step, and the CPU RNG from `checkpoint_dir`; returns its
// state. Moments are loaded only for the parameters in the optimizer's param groups (all of
// them, or this rank's shard under ZeRO-1); the optimizer's other state is cleared. Throws
// InputError naming the file when a piece is missing, mis-shaped or not finite, and (unless
// options.allow_inexact) when a stepped parameter's moments are missing or the file holds
// moments of parameters the model does not have.
TrainingState load_training_checkpoint(const std::string& checkpoint_dir, LlamaModelImpl* model,
                                       torch::optim::AdamW* optimizer,
                                       const std::vector<std::string>& names,
                                       const std::vector<at::Tensor>& params,
                                       const ResumeOptions& options = {});

// Loads the newest complete checkpoint of `out_dir` (see ResumeOptions for a corrupt one).
// Returns the folder loaded and its state; the folder is "" when there is no checkpoint.
std::pair<std::string, TrainingState> resume_newest_checkpoint(
    const std::string& out_dir, LlamaModelImpl* model, torch::optim::AdamW* optimizer,
    const std::vector<std::string>& names, const std::vector<at::Tensor>& params,
    const ResumeOptions& options);

// The final model in OUT/ (HF folder in `dtype`) plus the stage's extra files.
void save_final_model(const std::string& out_dir, LlamaModelImpl& model, at::ScalarType dtype,
                      const std::function<void(const std::string&)>& save_extra);

}  // namespace posttrain::core
