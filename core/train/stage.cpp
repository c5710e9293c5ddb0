#include "core/train/stage.h"

#include <iostream>

#include "common/error.h"
#include "core/checkpoint/hf_checkpoint.h"

namespace posttrain::core {

void add_model_keys(ConfigSchema* s) {
  s->add({"model", "path", ConfigType::kPath, nullptr, true, {},
          "Hugging Face model folder to start from (config.json + safetensors)"});
  s->add({"model", "tokenizer", ConfigType::kPath, nullptr, false, {},
          "folder or tokenizer.json of the tokenizer; default: model.path"});
}

StageContext stage_context(const nlohmann::json& resolved) {
  const auto& model = resolved.at("model");
  const auto& tok = model.at("tokenizer");
  const std::string model_dir = model.at("path").get<std::string>();
  StageContext ctx(Tokenizer::load_dir(tok.is_null() ? model_dir : tok.get<std::string>()));
  ctx.config = resolved;
  ctx.model_dir = model_dir;
  ctx.options = trainer_options_from_config(resolved);
  ctx.env = DistEnv::from_environment();
  ctx.device = resolve_device(ctx.options.device, ctx.env.local_rank);
  if (ctx.env.distributed()) ctx.dp = DataParallel::init(ctx.env, ctx.device);
  ctx.main = ctx.env.rank == 0;
  return ctx;
}

TrainResult run_stage(const nlohmann::json& resolved, const StageSpec& spec) {
  StageContext ctx = stage_context(resolved);
  StagePlan plan = spec.plan(ctx);
  if (!plan.train || !plan.loss) throw Error("stage " + spec.name + ": plan without rows or loss");
  LlamaModel model = spec.load_model ? spec.load_model(ctx)
                                     : load_model(ctx.model_dir, ctx.device, at::kFloat);
  if (ctx.dp) ctx.dp->broadcast_parameters(model->parameters());
  Trainer trainer(ctx.options, model, plan.loss, plan.train, plan.eval, ctx.dp);
  trainer.set_label(spec.name);
  trainer.set_rows_independent(plan.rows_independent);
  trainer.set_run_info({{"stage", spec.name}, {"config", resolved}});
  trainer.set_data_summary(plan.data_summary);
  const Tokenizer tok = ctx.tokenizer;
  trainer.set_save_extra([tok](const std::string& dir) { tok.save_dir(dir); });
  TrainResult r = trainer.run();
  if (ctx.main) std::cout << r.summary.dump() << std::endl;
  return r;
}

}  // namespace posttrain::core
