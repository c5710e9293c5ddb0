#include "core/train/trainer_options.h"

#include <nlohmann/json.hpp>

namespace posttrain::core {

namespace {

std::string positive(const nlohmann::json& v) {
  return v.get<double>() > 0 ? "" : "must be > 0";
}
std::string non_negative(const nlohmann::json& v) {
  return v.get<double>() >= 0 ? "" : "must be >= 0";
}
std::string unit_interval(const nlohmann::json& v) {
  double x = v.get<double>();
  return x >= 0 && x < 1 ? "" : "must be in [0, 1)";
}
std::string device_name(const nlohmann::json& v) {
  const std::string s = v.get<std::string>();
  if (s == "auto" || s == "cpu" || s == "cuda") return "";
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5 &&
      s.find_first_not_of("0123456789", 5) == std::string::npos) {
    return "";
  }
  return "expected auto|cpu|cuda|cuda:N, got '" + s + "'";
}

std::string zero_stage(const nlohmann::json& v) {
  const int64_t stage = v.get<int64_t>();
  return stage == 0 || stage == 1 ? "" : "must be 0 or 1, got " + std::to_string(stage);
}

}  // namespace

void add_trainer_keys(ConfigSchema* s, ModelKind kind) {
  using T = ConfigType;
  s->add({"optimizer", "lr", T::kFloat, 1e-5, false, {}, "peak learning rate of AdamW", positive});
  s->add({"optimizer", "beta1", T::kFloat, 0.9, false, {}, "AdamW beta1", unit_interval});
  s->add({"optimizer", "beta2", T::kFloat, 0.95, false, {}, "AdamW beta2", unit_interval});
  s->add({"optimizer", "eps", T::kFloat, 1e-8, false, {}, "AdamW epsilon", positive});
  s->add({"optimizer", "weight_decay", T::kFloat, 0.0, false, {},
          "decoupled weight decay, applied to 2-D weights only (not norms)", non_negative});

  s->add({"schedule", "warmup_steps", T::kInt, 0, false, {},
          "optimizer steps of linear warmup from 0 to optimizer.lr", non_negative});
  s->add({"schedule", "decay", T::kString, "cosine", false, {"cosine", "linear", "constant"},
          "decay after warmup, down to lr * min_lr_ratio at the last step"});
  s->add({"schedule", "min_lr_ratio", T::kFloat, 0.0, false, {},
          "final lr as a fraction of optimizer.lr", non_negative});

  s->add({"training", "max_steps", T::kInt, 0, false, {},
          "optimizer steps to run; 0 = training.epochs passes over the training rows",
          non_negative});
  s->add({"training", "epochs", T::kInt, 1, false, {},
          "passes over the training rows when max_steps is 0", positive});
  s->add({"training", "micro_batch_size", T::kInt, 1, false, {},
          "rows per forward/backward pass on one rank", positive});
  s->add({"training", "grad_accum_steps", T::kInt, 1, false, {},
          "micro-batches per optimizer step on one rank (global batch = micro_batch_size * "
          "grad_accum_steps * ranks rows)",
          positive});
  s->add({"training", "max_grad_norm", T::kFloat, 1.0, false, {},
          "clip the global gradient norm to this; 0 = no clipping"});
  s->add({"training", "seed", T::kInt, 0, false, {},
          "seed of the data order, the eval split and parameter-free randomness"});
  s->add({"training", "device", T::kString, "auto", false, {},
          "auto (cuda when present, else cpu) | cpu | cuda | cuda:N", device_name});
  s->add({"training", "precision", T::kString, "auto", false, {"auto", "float32", "bf16"},
          "auto = bf16 autocast with float32 master weights on GPU, float32 on CPU"});
  s->add({"training", "activation_checkpointing", T::kBool, false, false, {},
          "recompute each block's activations in backward (less memory, ~30% more compute)"});
  s->add({"training", "eval_every", T::kInt, 0, false, {},
          "optimizer steps between eval passes (when there is eval data); 0 = only at the end",
          non_negative});
  s->add({"training", "log_every", T::kInt, 1, false, {},
          "optimizer steps between metrics.jsonl lines", positive});
  if (kind == ModelKind::kCausalLM) {
    s->add({"training", "logprob_chunk", T::kInt, 4096, false, {},
            "tokens per chunk of the vocabulary projection in the loss (bounds logits memory)",
            positive});
    s->add({"training", "keep_logits_mb", T::kInt, 4096, false, {},
            "keep the head's logits of a micro-batch for backward when they fit this many MiB "
            "(one big matmul each way); above it, backward recomputes them chunk by chunk",
            non_negative});
  }
  s->add({"training", "peak_tflops", T::kFloat, 0.0, false, {},
          "device peak for MFU on GPU; 0 = 989 (H100 SXM bf16 dense)", non_negative});
  s->add({"training", "threads", T::kInt, 0, false, {},
          "CPU intra-op threads; 0 = LibTorch's default", non_negative});
  s->add({"training", "zero_stage", T::kInt, 0, false, {},
          "0 = every data-parallel rank keeps all AdamW state; 1 = ZeRO-1: each rank keeps the "
          "moments of its shard of the parameters only, steps them, and broadcasts them (same "
          "results, about 1/ranks of the optimizer memory; checkpoints are the same either way)",
          zero_stage});

  s->add({"output", "dir", T::kString, nullptr, true, {},
          "OUT: checkpoints go to OUT/checkpoint-<step>/, the final model to OUT/, metrics to "
          "OUT/metrics.jsonl"});
  s->add({"output", "save_every", T::kInt, 0, false, {},
          "optimizer steps between checkpoints (model + optimizer + data position); 0 = none",
          non_negative});
  s->add({"output", "save_dtype", T::kString, "float32", false, {"float32", "bfloat16"},
          "dtype of the final model's weights (checkpoints stay float32 for exact resume)"});
  s->add({"output", "keep_checkpoints", T::kInt, 0, false, {},
          "keep only the newest N checkpoints; 0 = keep all", non_negative});
  s->add({"output", "resume", T::kBool, true, false, {},
          "continue from the newest complete OUT/checkpoint-<step>/ when there is one"});
}

TrainerOptions trainer_options_from_config(const nlohmann::json& c) {
  TrainerOptions o;
  const auto& opt = c.at("optimizer");
  o.lr = opt.at("lr").get<double>();
  o.beta1 = opt.at("beta1").get<double>();
  o.beta2 = opt.at("beta2").get<double>();
  o.eps = opt.at("eps").get<double>();
  o.weight_decay = opt.at("weight_decay").get<double>();
  const auto& sch = c.at("schedule");
  o.warmup_steps = sch.at("warmup_steps").get<int64_t>();
  o.decay = parse_decay(sch.at("decay").get<std::string>());
  o.min_lr_ratio = sch.at("min_lr_ratio").get<double>();
  const auto& tr = c.at("training");
  o.max_steps = tr.at("max_steps").get<int64_t>();
  o.epochs = tr.at("epochs").get<int64_t>();
  o.micro_batch_size = tr.at("micro_batch_size").get<int64_t>();
  o.grad_accum_steps = tr.at("grad_accum_steps").get<int64_t>();
  o.max_grad_norm = tr.at("max_grad_norm").get<double>();
  o.seed = tr.at("seed").get<int64_t>();
  o.device = tr.at("device").get<std::string>();
  o.precision = tr.at("precision").get<std::string>();
  o.activation_checkpointing = tr.at("activation_checkpointing").get<bool>();
  o.eval_every = tr.at("eval_every").get<int64_t>();
  o.log_every = tr.at("log_every").get<int64_t>();
  if (tr.contains("logprob_chunk")) o.logprob_chunk = tr.at("logprob_chunk").get<int64_t>();
  if (tr.contains("keep_logits_mb")) o.keep_logits_mb = tr.at("keep_logits_mb").get<int64_t>();
  o.peak_tflops = tr.at("peak_tflops").get<double>();
  o.threads = tr.at("threads").get<int64_t>();
  o.zero_stage = tr.at("zero_stage").get<int64_t>();
  const auto& out = c.at("output");
  o.dir = out.at("dir").get<std::string>();
  o.save_every = out.at("save_every").get<int64_t>();
  o.save_dtype = out.at("save_dtype").get<std::string>();
  o.keep_checkpoints = out.at("keep_checkpoints").get<int64_t>();
  o.resume = out.at("resume").get<bool>();
  return o;
}

}  // namespace posttrain::core
