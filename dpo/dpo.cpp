// The DPO stage runner (see dpo.h).
#include "dpo/dpo.h"

#include <cmath>
#include <filesystem>
#include <iostream>

#include <ATen/ATen.h>

#include "common/error.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/distributed/data_parallel.h"
#include "core/scoring.h"
#include "core/tokenizer/chat_template.h"
#include "core/train/trainer_options.h"
#include "dpo/dpo_loss.h"
#include "dpo/options.h"
#include "dpo/pair_data.h"
#include "dpo/pair_rows.h"

namespace fs = std::filesystem;

namespace posttrain::dpo {
namespace {

core::NearDuplicateOptions near_duplicate_options(const DpoDataOptions& d) {
  core::NearDuplicateOptions o;
  o.rule = core::parse_near_duplicate_rule(d.near_duplicates);
  o.similarity = d.near_duplicate_similarity;
  return o;
}

PairMixture build_pairs(const DpoOptions& o, const PairTokenization& how, uint64_t seed, nlohmann::json* rounds) {
  const DpoDataOptions& d = o.data;
  std::vector<PairSource> sources;
  for (const auto& s : d.sources) {
    sources.push_back({s.path, s.weight, read_pair_file(s.path, how), false, 0});
  }
  if (!d.store.empty()) {
    StorePairOptions so;
    so.rounds = d.store_rounds;
    so.min_strength = d.min_strength;
    so.near_duplicates = near_duplicate_options(d);
    PairSource src;
    std::vector<int> read_rounds;
    src.pairs = read_store_pairs(d.store, so, how, &src.near_duplicates, &read_rounds);
    *rounds = read_rounds;
    src.name = d.store + "#rounds=" + nlohmann::json(read_rounds).dump();
    src.weight = d.store_weight;
    sources.push_back(std::move(src));
  }
  if (!d.eval_path.empty()) {
    sources.push_back({d.eval_path, 1.0, read_pair_file(d.eval_path, how), true, 0});
  }
  return mix_pairs(std::move(sources), d.truncation, d.eval_fraction, seed);
}

// Everything besides the pair's tokens that changes its reference values.
std::string cache_settings_hash(const DpoOptions& o, const core::Tokenizer& tok,
                                const PairTokenization& how) {
  core::ReferenceSettings s;
  s.checkpoint = core::checkpoint_fingerprint(o.reference);
  s.tokenizer = tok.fingerprint();
  s.chat_template = core::chat_format_name(how.format);
  s.truncation = "max_length=" + std::to_string(o.data.truncation.max_length) +
                 ",max_prompt_length=" + std::to_string(o.data.truncation.max_prompt_length) +
                 ",keep=prompt_end,overlong=" + (o.data.truncation.drop ? "drop" : "truncate");
  s.masks = "mask_format_tokens=" + std::to_string(o.mask_format_tokens) +
            ",format_tokens=" + nlohmann::json(o.format_tokens).dump();
  s.dtype = "float32";
  s.layout = "shared_prefix";
  s.extra["strings"] = how.strings_as_text ? "text" : "chat";
  return core::reference_settings_hash(s);
}

std::vector<const TokenizedPair*> pointers(const std::vector<TokenizedPair>& v) {
  std::vector<const TokenizedPair*> out;
  for (const auto& p : v) out.push_back(&p);
  return out;
}

}  // namespace

DpoResult run_dpo(const nlohmann::json& resolved) {
  const core::TrainerOptions topts = core::trainer_options_from_config(resolved);
  const DpoOptions o = dpo_options(resolved);
  const core::DistEnv env = core::DistEnv::from_environment();
  const at::Device device = core::resolve_device(topts.device, env.local_rank);
  std::shared_ptr<core::DataParallel> dp;
  if (env.distributed()) dp = core::DataParallel::init(env, device);
  const bool main = env.rank == 0;

  core::Tokenizer tok = core::Tokenizer::load_dir(o.tokenizer);
  if (o.data.chat_format != "auto") {
    tok.set_chat_format(core::parse_chat_format(o.data.chat_format));
  }
  const core::LlamaConfig policy_config = core::load_config(o.model);
  if (policy_config.kind != core::ModelKind::kCausalLM) {
    throw UsageError(o.model + " is a reward model; DPO trains a causal LM");
  }
  check_reference(o.reference, policy_config, tok.fingerprint());

  PairTokenization how;
  how.tok = &tok;
  how.format = tok.chat_format();
  how.masks.mask_format_tokens = o.mask_format_tokens;
  if (!o.format_tokens.empty()) {
    how.masks.format_ids = format_token_ids(tok, o.format_tokens, "dpo.format_tokens");
  }
  how.strings_as_text = o.data.prompt_completion_as_text;
  how.vocab_size = policy_config.vocab_size;

  nlohmann::json rounds = nullptr;
  PairMixture mix = build_pairs(o, how, static_cast<uint64_t>(topts.seed), &rounds);
  // Before the reference pass, so a run the limits gut stops (or is reported) at once.
  std::vector<core::SourceLoss> losses;
  for (const auto& s : mix.sources) {
    losses.push_back({s.name, s.read, s.truncated, s.dropped_long});
  }
  core::check_data_loss(losses, o.data.data_loss, "dpo train",
                        "data.max_length / data.max_prompt_length", main ? &std::cerr : nullptr);
  if (mix.train.empty()) throw UsageError("no training pairs left after length limits");

  // Reference values before the policy is loaded; the cache file lives in OUT.
  if (main) fs::create_directories(topts.dir);
  if (dp) dp->barrier();
  const std::string store = o.reference_cache ? o.data.store : "";
  RefCache cache(reference_name(o.reference), cache_settings_hash(o, tok, how), store,
                 (fs::path(topts.dir) / "ref_logprobs.jsonl").string());
  DpoResult result;
  auto train_refs = std::make_shared<const std::vector<RefValues>>(
      reference_logprobs(pointers(mix.train), cache, o.reference, device,
                         o.reference_batch_size, topts.logprob_chunk, dp, &result.reference));
  auto eval_refs = std::make_shared<const std::vector<RefValues>>(
      reference_logprobs(pointers(mix.eval), cache, o.reference, device, o.reference_batch_size,
                         topts.logprob_chunk, dp, &result.reference));
  result.train_pairs = static_cast<int64_t>(mix.train.size());
  result.eval_pairs = static_cast<int64_t>(mix.eval.size());
  nlohmann::json stats = nlohmann::json::array();
  for (const auto& s : mix.sources) stats.push_back(s.to_json());
  nlohmann::json data_line = {{"event", "data"},
                              {"train_pairs", result.train_pairs},
                              {"eval_pairs", result.eval_pairs},
                              {"sources", stats},
                              {"reference",
                               {{"pairs", result.reference.pairs},
                                {"cached", result.reference.cached},
                                {"computed", result.reference.computed},
                                {"forwards", result.reference.forwards},
                                {"cache", store.empty() ? cache.file_path() : store}}}};
  if (!rounds.is_null()) data_line["store_rounds"] = rounds;
  if (main) std::cout << data_line.dump() << std::endl;

  PairRowOptions ropts;
  ropts.max_row_tokens = 2 * o.data.truncation.max_length;
  ropts.packing = o.data.packing;
  ropts.seed = static_cast<uint64_t>(topts.seed);
  ropts.pad_id = tok.pad_id().value_or(tok.eos_ids().empty() ? 0 : tok.eos_ids().front());
  auto train_rows = std::make_shared<PairRowDataset>(
      std::make_shared<const std::vector<TokenizedPair>>(std::move(mix.train)), train_refs,
      ropts);
  std::shared_ptr<PairRowDataset> eval_rows;
  if (!mix.eval.empty()) {
    PairRowOptions eopts = ropts;
    eopts.shuffle = false;
    eval_rows = std::make_shared<PairRowDataset>(
        std::make_shared<const std::vector<TokenizedPair>>(std::move(mix.eval)), eval_refs,
        eopts);
  }

  core::LlamaModel model = core::load_model(o.model, device, at::kFloat);
  if (dp) dp->broadcast_parameters(model->parameters());
  DpoLossConfig lc;
  lc.loss = o.loss;
  lc.rpo_alpha = o.rpo_alpha;
  lc.logprob_chunk = topts.logprob_chunk;
  lc.keep_logits_bytes = topts.keep_logits_mb << 20;
  core::Trainer trainer(
      topts, model,
      [lc](core::LlamaModel& m, const core::MicroBatch& b) { return dpo_loss(*m, b, lc); },
      train_rows, eval_rows, dp);
  trainer.set_label("dpo");
  trainer.set_rows_independent(true);  // each pair lies whole in one row
  trainer.set_run_info({{"stage", "dpo"}, {"config", resolved}});
  trainer.set_data_summary(data_line);
  trainer.set_save_extra([tok](const std::string& dir) { tok.save_dir(dir); });
  result.train = trainer.run();
  const core::TrainResult& r = result.train;
  if (main) std::cout << r.summary.dump() << std::endl;
  return result;
}

}  // namespace posttrain::dpo
