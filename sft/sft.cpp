// The SFT stage: config schema, data, loss and runner (see sft.h).
#include "sft/sft.h"

#include <filesystem>
#include <iostream>

#include <ATen/ATen.h>

#include "common/error.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/data/examples.h"
#include "core/data/packing.h"
#include "core/distributed/data_parallel.h"
#include "core/logprobs.h"
#include "core/tokenizer/chat_template.h"
#include "core/train/trainer_options.h"
#ifdef POSTTRAIN_SFT_WITH_STORE
#include "datastore/store.h"
#endif

namespace fs = std::filesystem;

namespace posttrain::sft {

using core::ConfigKey;
using core::ConfigType;

namespace {

// data.sources: a list of paths or {"path": P, "weight": W > 0} objects.
std::string check_sources(const nlohmann::json& v) {
  if (!v.is_array()) return std::string("expected a list of sources, got ") + v.type_name();
  for (size_t i = 0; i < v.size(); ++i) {
    const auto& s = v[i];
    const std::string at = "[" + std::to_string(i) + "]";
    std::string path;
    if (s.is_string()) {
      path = s.get<std::string>();
    } else if (s.is_object()) {
      for (auto it = s.begin(); it != s.end(); ++it) {
        if (it.key() != "path" && it.key() != "weight") {
          return at + ": unknown key '" + it.key() + "' (path, weight)";
        }
      }
      if (!s.contains("path") || !s["path"].is_string()) return at + ".path: expected a string";
      path = s["path"].get<std::string>();
      if (s.contains("weight") && (!s["weight"].is_number() || s["weight"].get<double>() <= 0)) {
        return at + ".weight: expected a number > 0";
      }
    } else {
      return at + ": expected a path or {\"path\", \"weight\"}";
    }
    if (!fs::exists(path)) return at + ": path does not exist: " + path;
  }
  return "";
}

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
  s.add({"model", "path", T::kPath, nullptr, true, {},
         "Hugging Face model folder to start from (config.json + safetensors)"});
  s.add({"model", "tokenizer", T::kPath, nullptr, false, {},
         "folder or tokenizer.json of the tokenizer; default: model.path"});
  s.add({"data", "sources", T::kJson, nlohmann::json::array(), false, {},
         "JSONL training files: [\"a.jsonl\", {\"path\": \"b.jsonl\", \"weight\": 0.5}]; a "
         "weight w uses floor(w) copies plus a seeded fraction w - floor(w) of the file per epoch",
         check_sources});
  s.add({"data", "store", T::kPath, nullptr, false, {},
         "SQLite store to read a round's selected samples from (with data.store_round)"});
  // The store's keys mean nothing without a store: setting one alone is a config error.
  ConfigKey store_round{"data", "store_round", T::kInt, nullptr, false, {},
                        "the round whose selected SFT samples are read from data.store"};
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
         "token limit of one example and of one packed row", check_positive});
  s.add({"data", "overlong", T::kString, "truncate", false, {"truncate", "drop"},
         "what happens to examples longer than max_seq_len (counted in the data log line)"});
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

SftDataOptions sft_data_options(const nlohmann::json& c) {
  const auto& d = c.at("data");
  SftDataOptions o;
  for (const auto& s : d.at("sources")) {
    if (s.is_string()) {
      o.sources.push_back({s.get<std::string>(), 1.0});
    } else {
      o.sources.push_back({s.at("path").get<std::string>(), s.value("weight", 1.0)});
    }
  }
  if (!d.at("store").is_null()) {
    o.store = d.at("store").get<std::string>();
    if (d.at("store_round").is_null()) {
      throw InputError(Location{"", 0, "data.store_round"}, "required when data.store is set");
    }
    o.store_round = d.at("store_round").get<int>();
  }  // store_round and store_weight without data.store: refused by resolve() (ConfigKey::needs)
  o.store_weight = d.at("store_weight").get<double>();
  if (o.sources.empty() && o.store.empty()) {
    throw InputError(Location{"", 0, "data.sources"},
                     "no training data: give data.sources or data.store");
  }
  if (!d.at("eval_path").is_null()) o.eval_path = d.at("eval_path").get<std::string>();
  o.eval_fraction = d.at("eval_fraction").get<double>();
  o.max_seq_len = d.at("max_seq_len").get<int64_t>();
  o.overlong = core::parse_overlong_policy(d.at("overlong").get<std::string>());
  o.packing = d.at("packing").get<bool>();
  o.prompt_completion_as_text = d.at("prompt_completion").get<std::string>() == "text";
  o.chat_format = d.at("chat_format").get<std::string>();
  return o;
}

namespace {

std::vector<core::TokenizedExample> tokenize_all(const std::vector<core::SftExample>& examples,
                                                 const core::Tokenizer& tok,
                                                 core::ChatFormat format) {
  std::vector<core::TokenizedExample> out;
  out.reserve(examples.size());
  for (const auto& ex : examples) {
    try {
      out.push_back(core::tokenize_sft_example(tok, format, ex));
    } catch (const InputError&) {
      throw;
    } catch (const Error& e) {
      throw InputError(ex.where, e.what());
    }
  }
  return out;
}

#ifdef POSTTRAIN_SFT_WITH_STORE
std::vector<core::SftExample> read_store_examples(const std::string& path, int round) {
  datastore::Store::Options opts;
  opts.read_only = true;
  auto store = datastore::Store::open(path, opts);
  std::vector<core::SftExample> out;
  for (const auto& s : store.selected_samples(round)) {
    // Errors read "STORE: field 'round R, dialogue ID, messages[i].weight': ...".
    const char* kind = s.kind == datastore::SampleKind::kResponse ? "response " : "dialogue ";
    core::SftExample ex;
    ex.where = Location{path, 0,
                        "round " + std::to_string(round) + ", " + kind + std::to_string(s.id) +
                            ", messages"};
    ex.messages = core::parse_messages(s.messages, ex.where);
    out.push_back(std::move(ex));
  }
  if (out.empty()) {
    throw UsageError("store " + path + " has no selected samples for round " +
                     std::to_string(round));
  }
  return out;
}
#endif

}  // namespace

core::Mixture build_sft_data(const SftDataOptions& o, const core::Tokenizer& tok,
                             core::ChatFormat format, uint64_t seed) {
  std::vector<core::TokenizedSource> sources;
  for (const auto& s : o.sources) {
    auto examples = core::read_sft_examples(s.path, o.prompt_completion_as_text);
    sources.push_back({s.path, s.weight, tokenize_all(examples, tok, format), false});
  }
  if (!o.store.empty()) {
#ifdef POSTTRAIN_SFT_WITH_STORE
    auto examples = read_store_examples(o.store, o.store_round);
    sources.push_back({o.store + "#round=" + std::to_string(o.store_round), o.store_weight,
                       tokenize_all(examples, tok, format), false});
#else
    throw UsageError("data.store: this build has no datastore");
#endif
  }
  if (!o.eval_path.empty()) {
    auto examples = core::read_sft_examples(o.eval_path, o.prompt_completion_as_text);
    sources.push_back({o.eval_path, 1.0, tokenize_all(examples, tok, format), true});
  }
  core::MixtureOptions mo;
  mo.max_seq_len = o.max_seq_len;
  mo.overlong = o.overlong;
  mo.eval_fraction = o.eval_fraction;
  mo.seed = seed;
  return core::build_mixture(std::move(sources), mo);
}

at::Tensor sft_loss_sum(core::LlamaModelImpl& model, const core::MicroBatch& batch,
                        int64_t logprob_chunk, int64_t keep_logits_bytes) {
  core::ForwardInputs in;
  in.input_ids = batch.require("input_ids");
  in.position_ids = batch.get("position_ids");
  in.document_ids = batch.get("document_ids");
  in.attention_mask = batch.get("attention_mask");
  at::Tensor hidden = model.hidden_states(in);  // [B, T, H]
  at::Tensor logp = core::target_logprobs(model, hidden, batch.require("targets"), logprob_chunk,
                                          keep_logits_bytes);
  return -logp.sum();  // [B, T] float32 with 0 at ignored positions -> scalar
}

core::TrainResult run_sft(const nlohmann::json& resolved) {
  const core::TrainerOptions topts = core::trainer_options_from_config(resolved);
  const SftDataOptions dopts = sft_data_options(resolved);
  const core::DistEnv env = core::DistEnv::from_environment();
  const at::Device device = core::resolve_device(topts.device, env.local_rank);
  std::shared_ptr<core::DataParallel> dp;
  if (env.distributed()) dp = core::DataParallel::init(env, device);
  const bool main = env.rank == 0;

  const std::string model_dir = resolved["model"]["path"].get<std::string>();
  const std::string tok_dir = resolved["model"]["tokenizer"].is_null()
                                  ? model_dir
                                  : resolved["model"]["tokenizer"].get<std::string>();
  core::Tokenizer tok = core::Tokenizer::load_dir(tok_dir);
  if (dopts.chat_format != "auto") tok.set_chat_format(core::parse_chat_format(dopts.chat_format));
  const core::ChatFormat format = tok.chat_format();

  core::Mixture mix = build_sft_data(dopts, tok, format, static_cast<uint64_t>(topts.seed));
  nlohmann::json stats = nlohmann::json::array();
  for (const auto& s : mix.sources) stats.push_back(s.to_json());
  if (main) {
    std::cout << nlohmann::json{{"event", "data"},
                                {"train_examples", mix.train.size()},
                                {"eval_examples", mix.eval.size()},
                                {"sources", stats}}
                     .dump()
              << std::endl;
  }
  if (mix.train.empty()) throw UsageError("no training examples left after length limits");

  core::PackingOptions popts;
  popts.max_seq_len = dopts.max_seq_len;
  popts.packing = dopts.packing;
  popts.seed = static_cast<uint64_t>(topts.seed);
  popts.pad_id = tok.pad_id().value_or(tok.eos_ids().empty() ? 0 : tok.eos_ids().front());
  auto train_rows = std::make_shared<core::TokenRowDataset>(
      std::make_shared<const std::vector<core::TokenizedExample>>(std::move(mix.train)), popts);
  std::shared_ptr<core::TokenRowDataset> eval_rows;
  if (!mix.eval.empty()) {
    core::PackingOptions eopts = popts;
    eopts.shuffle = false;
    eval_rows = std::make_shared<core::TokenRowDataset>(
        std::make_shared<const std::vector<core::TokenizedExample>>(std::move(mix.eval)), eopts);
  }

  core::LlamaModel model = core::load_model(model_dir, device, at::kFloat);
  if (dp) dp->broadcast_parameters(model->parameters());
  const int64_t chunk = topts.logprob_chunk, keep = topts.keep_logits_mb << 20;
  core::Trainer trainer(
      topts, model,
      [chunk, keep](core::LlamaModel& m, const core::MicroBatch& b) {
        return sft_loss_sum(*m, b, chunk, keep);
      },
      train_rows, eval_rows, dp);
  trainer.set_label("sft");
  trainer.set_rows_independent(true);  // the loss is a sum over each row's own targets
  trainer.set_run_info({{"stage", "sft"}, {"config", resolved}});
  trainer.set_save_extra([tok](const std::string& dir) { tok.save_dir(dir); });
  core::TrainResult r = trainer.run();
  if (main) {
    nlohmann::json done = {{"event", r.already_done ? "already_done" : "done"},
                           {"steps", r.final_step},
                           {"resumed_from", r.start_step},
                           {"output", topts.dir}};
    if (!r.already_done && std::isfinite(r.last_loss)) done["loss"] = r.last_loss;
    if (std::isfinite(r.last_eval_loss)) done["eval_loss"] = r.last_eval_loss;
    std::cout << done.dump() << std::endl;
  }
  return r;
}

}  // namespace posttrain::sft
