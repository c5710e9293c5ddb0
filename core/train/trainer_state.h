// Training state on disk, so a run resumes exactly. A checkpoint folder OUT/checkpoint-<step>/
// holds the model as a Hugging Face folder (float32, loadable by transformers), the stage's extra
// files (tokenizer), optimizer.safetensors (AdamW exp_avg / exp_avg_sq per parameter, float32,
// named "<param>.exp_avg" / "<param>.exp_avg_sq") and trainer_state.json (step, total steps,
// global batch, data position, schedule, AdamW step count, CPU RNG state as hex, run info). It
// is written to checkpoint-<step>.tmp and renamed, so a folder without the .tmp suffix and with
// trainer_state.json is complete.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
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
  int64_t step = 0;               // optimizer steps completed
  int64_t total_steps = 0;
  int64_t global_batch_rows = 0;  // rows per optimizer step over all ranks
  int64_t world_size = 1;
  int64_t rows_consumed = 0;      // data position: rows of the epoch stream used so far
  int64_t adam_step = 0;          // AdamW's per-parameter step count
  double lr = 0;                  // lr of the last step run
  LrSchedule schedule;
  std::string rng_cpu_hex;        // at::getDefaultCPUGenerator() state
  nlohmann::json run_info = nlohmann::json::object();

  nlohmann::json to_json() const;
  static TrainingState from_json(const nlohmann::json& j, const std::string& source);
};

void write_training_state(const std::string& path, const TrainingState& state);
TrainingState read_training_state(const std::string& path);

// The newest complete OUT/checkpoint-<step>/ folder, or "" when there is none.
std::string newest_checkpoint(const std::string& out_dir);

// Writes OUT/checkpoint-<state.step>/ (see the file comment); params/names in the same order.
// Fills state's adam_step and RNG. keep > 0 removes all but the newest `keep` checkpoints.
void save_training_checkpoint(const std::string& out_dir, TrainingState state,
                              LlamaModelImpl& model, torch::optim::AdamW& optimizer,
                              const std::vector<std::string>& names,
                              const std::vector<at::Tensor>& params,
                              const std::function<void(const std::string&)>& save_extra,
                              int64_t keep);

// Restores weights, AdamW moments and step, and the CPU RNG from `checkpoint_dir`; returns its
// state. Throws InputError naming the file when a piece is missing or mis-shaped.
TrainingState load_training_checkpoint(const std::string& checkpoint_dir, LlamaModelImpl* model,
                                       torch::optim::AdamW* optimizer,
                                       const std::vector<std::string>& names,
                                       const std::vector<at::Tensor>& params);

// The final model in OUT/ (HF folder in `dtype`) plus the stage's extra files.
void save_final_model(const std::string& out_dir, LlamaModelImpl& model, at::ScalarType dtype,
                      const std::function<void(const std::string&)>& save_extra);

}  // namespace posttrain::core
