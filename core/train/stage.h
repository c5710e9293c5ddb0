// What every training stage does around its own data and loss: read the ranks from the
// environment, pick the device, join data parallelism, load the tokenizer, load the model and
// broadcast it from rank 0, hand everything to a Trainer with the stage's label and run info
// (checked on resume), save the tokenizer with every checkpoint, and print the final "done" line.
// A stage (sft/, reward/, dpo/) supplies only a StageSpec: its name and a plan function that
// builds its rows and loss from the context.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/distributed/data_parallel.h"
#include "core/model/llama.h"
#include "core/tokenizer/tokenizer.h"
#include "core/train/batch.h"
#include "core/train/config.h"
#include "core/train/trainer.h"
#include "core/train/trainer_options.h"

namespace posttrain::core {

// The model section every stage shares: model.path (required) and model.tokenizer.
void add_model_keys(ConfigSchema* schema);

// What the stage's plan sees (set up before the plan runs).
struct StageContext {
  explicit StageContext(Tokenizer tok) : tokenizer(std::move(tok)) {}

  nlohmann::json config;             // the resolved config
  TrainerOptions options;            // its optimizer/schedule/training/output sections
  DistEnv env;                       // ranks from the environment
  at::Device device = at::kCPU;      // training.device resolved for this rank
  std::shared_ptr<DataParallel> dp;  // null on one process
  bool main = true;                  // rank 0: the rank that prints and writes
  std::string model_dir;             // model.path
  Tokenizer tokenizer;               // from model.tokenizer, default model.path
};

// The stage's training rows, eval rows (may be null) and loss.
struct StagePlan {
  std::shared_ptr<RowDataset> train, eval;
  LossFn loss;
  bool rows_independent = false;  // see Trainer::set_rows_independent
  // The {"event": "data", ...} line the plan printed; also written to metrics.jsonl.
  nlohmann::json data_summary;
};

struct StageSpec {
  std::string name;  // progress label and trainer_state.json's run_info.stage ("sft")
  // Builds data and loss; runs before the model loads, so data errors come first. May change
  // ctx.tokenizer (e.g. its chat format) before it is saved with the checkpoints.
  std::function<StagePlan(StageContext& ctx)> plan;
  // Loads the model to train onto ctx.device in float32; default load_model(ctx.model_dir).
  std::function<LlamaModel(const StageContext& ctx)> load_model;
};

// The context of a resolved config (environment, device, data parallel, tokenizer).
StageContext stage_context(const nlohmann::json& resolved);

// Runs a stage from a config resolved against a schema with the model and trainer keys.
// Rank 0 prints the trainer's final line (TrainResult::summary: {"event": "done" |
// "already_done", "steps", "resumed_from", "output", "loss", "eval_loss", the last metrics and
// eval metrics by name, HF's train_* figures}) when it ends.
TrainResult run_stage(const nlohmann::json& resolved, const StageSpec& spec);

}  // namespace posttrain::core
