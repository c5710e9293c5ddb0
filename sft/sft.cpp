// posttrain sft: the config schema and the stage (data in sft_data.cpp, loss in sft_loss.cpp).
#include "core/data/data_loss.h"
#include "core/data/sources.h"
#include "sft/sft.h"

#include "core/train/stage.h"

namespace posttrain::sft {

using core::ConfigKey;
using core::ConfigType;

namespace {

std::string check_fraction(const nlohmann::json& v) {
  const double x = v.get<double>();
  return x >= 0 && x < 1 ? "" : "must be in [0, 1)";
}

std::string check_positive(const nlohmann::json& v) {
  return v.get<double>() > 0 ? "" : "must be > 0";
}

}  // namespace

core::ConfigSchema sft_schema() {
  using T = ConfigType;
  core::ConfigSchema s;
  core::add_model_keys(&s);
  s.add({"data", "sources", T::kJson, nlohmann::json::array(), false, {},
         "JSONL training files: [\"a.jsonl\", {\"path\": \"b.jsonl\", \"weight\": 0.5}]; a "
         "weight w uses floor(w) copies plus a seeded fraction w - floor(w) of the file per epoch",
         core::check_data_sources});
  s.add({"data", "store", T::kPath, nullptr, false, {},
         "SQLite store to read a round's selected samples from (with data.store_round)"});
  // The store's keys mean nothing without a store: setting one alone is a config error.
  ConfigKey store_round{"data", "store_round", T::kInt, nullptr, false, {},
                        "the round whose selected SFT samples are read from data.store",
                        core::int_range(0, 1000000)};
  store_round.needs = "data.store";
  s.add(std::move(store_round));
  ConfigKey store_weight{"data", "store_weight", T::kFloat, 1.0, false, {},
                         "mixing weight of the store's samples (as a source weight)",
                         check_positive};
  store_weight.needs = "data.store";
  s.add(std::move(store_weight));
  s.add({"data", "eval_path", T::kPath, nullptr, false, {},
         "JSONL file of eval examples (eval loss only)"});
  s.add({"data", "eval_fraction", T::kFloat, 0.0, false, {},
         "fraction of each training source held out (seeded) for eval loss", check_fraction});
  s.add({"data", "max_seq_len", T::kInt, 2048, false, {},
         "token limit of one example and of one packed row", core::int_range(1, 1 << 20)});
  s.add({"data", "overlong", T::kString, "truncate", false, {"truncate", "drop"},
         "what happens to examples longer than max_seq_len (counted in the data log line)"});
  core::add_data_loss_keys(&s);
  s.add({"data", "packing", T::kBool, true, false, {},
         "pack many examples per row (positions restart and attention stays inside each example)"});
  s.add({"data", "prompt_completion", T::kString, "chat", false, {"chat", "text"},
         "string prompt/completion pairs: chat = a user and an assistant turn in the chat "
         "template; text = raw prompt text then completion + end-of-sequence token"});
  s.add({"data", "chat_format", T::kString, "auto", false, {"auto", "llama3", "chatml"},
         "chat template; auto = the tokenizer's"});
  core::add_trainer_keys(&s);
  return s;
}

namespace {

// Data (read before the model loads) and the loss, for core::run_stage.
core::StagePlan sft_plan(core::StageContext& ctx) {
  const SftDataOptions data = sft_data_options(ctx.config);
  if (data.chat_format != "auto") {
    ctx.tokenizer.set_chat_format(core::parse_chat_format(data.chat_format));
  }
  const auto seed = static_cast<uint64_t>(ctx.options.seed);
  core::Mixture mix = build_sft_data(data, ctx.tokenizer, ctx.tokenizer.chat_format(), seed);
  SftRows rows = make_sft_rows(std::move(mix), data, ctx.tokenizer, seed, ctx.main);
  const int64_t chunk = ctx.options.logprob_chunk, keep = ctx.options.keep_logits_mb << 20;
  core::StagePlan plan;
  plan.train = rows.train;
  plan.eval = rows.eval;
  plan.loss = [chunk, keep](core::LlamaModel& m, const core::MicroBatch& b) {
    return sft_loss(*m, b, chunk, keep);
  };
  plan.rows_independent = true;  // the loss is a sum over each row's own targets
  plan.data_summary = rows.summary;
  return plan;
}

}  // namespace

core::TrainResult run_sft(const nlohmann::json& resolved) {
  core::StageSpec spec;
  spec.name = "sft";
  spec.plan = sft_plan;
  return core::run_stage(resolved, spec);
}

}  // namespace posttrain::sft
