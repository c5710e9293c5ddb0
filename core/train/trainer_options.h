// The trainer's settings and the config sections they come from (optimizer, schedule, training,
// output). Every stage that trains (SFT, reward, DPO) adds these keys to its schema with
// add_trainer_keys() and reads them back with trainer_options_from_config(), so the sections mean
// the same thing everywhere.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/model/llama_config.h"
#include "core/train/config.h"
#include "core/train/schedule.h"

namespace posttrain::core {

struct TrainerOptions {
  // optimizer: AdamW (decoupled weight decay, applied to matrices only; norms and biases skip it)
  double lr = 1e-5;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.0;
  // schedule
  int64_t warmup_steps = 0;
  DecayKind decay = DecayKind::kCosine;
  double min_lr_ratio = 0.0;
  // training
  int64_t max_steps = 0;          // 0: run `epochs` epochs of the training rows
  int64_t epochs = 1;
  int64_t micro_batch_size = 1;   // rows per forward/backward on one rank
  int64_t grad_accum_steps = 1;   // micro-batches per optimizer step on one rank
  double max_grad_norm = 1.0;     // <= 0: no clipping (the norm is still logged)
  int64_t seed = 0;               // data order and any randomness
  std::string device = "auto";    // auto|cpu|cuda|cuda:N
  std::string precision = "auto"; // auto (bf16 autocast on GPU, float32 on CPU)|float32|bf16
  bool activation_checkpointing = false;
  int64_t eval_every = 0;         // optimizer steps between eval passes; 0: only at the end
  int64_t log_every = 1;          // optimizer steps between metrics lines
  // LM head only (absent from a reward model's schema):
  int64_t logprob_chunk = 4096;   // tokens per chunk of the vocabulary projection
  int64_t keep_logits_mb = 4096;  // head logits kept for backward up to this size (MiB)
  double peak_tflops = 0;         // for MFU on GPU; 0 = H100 SXM bf16 dense (989)
  int64_t threads = 0;            // CPU intra-op threads; 0 = LibTorch's default
  int64_t zero_stage = 0;         // 0: every rank keeps all AdamW state; 1: state sharded (ZeRO-1)
  // output
  std::string dir;                // OUT
  int64_t save_every = 0;         // optimizer steps between OUT/checkpoint-<step>/; 0: none
  std::string save_dtype = "float32";  // dtype of the final model in OUT (float32|bfloat16)
  int64_t keep_checkpoints = 0;   // newest checkpoints kept; 0 = all
  bool resume = true;             // continue from the newest complete checkpoint in OUT
};

// Adds the optimizer, schedule, training and output sections to `schema`.
// `kind`: the model the stage trains; a reward model has no LM head, so no head chunk keys.
void add_trainer_keys(ConfigSchema* schema, ModelKind kind = ModelKind::kCausalLM);
// Reads them from a config resolved against a schema that has them.
TrainerOptions trainer_options_from_config(const nlohmann::json& resolved);

}  // namespace posttrain::core
