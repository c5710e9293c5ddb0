// SFT data: the data section typed, JSONL sources and a store round read and tokenised, mixed by
// weight with an eval split and length limits (core/data/mixture.h), laid out as rows.
#include "sft/sft_data.h"

#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "core/tokenizer/chat_template.h"
#include "sft/sft_examples.h"
#ifdef POSTTRAIN_SFT_WITH_STORE
#include "datastore/store.h"
#endif

namespace fs = std::filesystem;

namespace posttrain::sft {

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
  o.data_loss = core::data_loss_policy(c);
  return o;
}

namespace {

// Tokenises the examples SFT trains on; synth lines that were not kept are skipped and counted
// in *not_kept.
std::vector<core::TokenizedExample> tokenize_all(const std::vector<SftExample>& examples,
                                                 const core::Tokenizer& tok,
                                                 core::ChatFormat format, int64_t* not_kept) {
  std::vector<core::TokenizedExample> out;
  out.reserve(examples.size());
  *not_kept = 0;
  for (const auto& ex : examples) {
    if (ex.not_kept) {
      ++*not_kept;
      continue;
    }
    try {
      out.push_back(tokenize_sft_example(tok, format, ex));
    } catch (const InputError&) {
      throw;
    } catch (const Error& e) {
      throw InputError(ex.where, e.what());
    }
  }
  return out;
}

#ifdef POSTTRAIN_SFT_WITH_STORE
std::vector<SftExample> read_store_examples(const std::string& path, int round) {
  datastore::Store::Options opts;
  opts.read_only = true;
  auto store = datastore::Store::open(path, opts);
  std::vector<SftExample> out;
  for (const auto& s : store.selected_samples(round)) {
    // Errors read "STORE: field 'round R, dialogue ID, messages[i].weight': ...".
    const char* kind = s.kind == datastore::SampleKind::kResponse ? "response " : "dialogue ";
    SftExample ex;
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
  std::vector<int64_t> not_kept;  // per source
  auto add = [&](std::string name, double weight, const std::vector<SftExample>& examples,
                 bool eval_only) {
    int64_t skipped = 0;
    sources.push_back({std::move(name), weight, tokenize_all(examples, tok, format, &skipped),
                       eval_only});
    not_kept.push_back(skipped);
  };
  for (const auto& s : o.sources) {
    add(s.path, s.weight, read_sft_examples(s.path, o.prompt_completion_as_text), false);
  }
  if (!o.store.empty()) {
#ifdef POSTTRAIN_SFT_WITH_STORE
    add(o.store + "#round=" + std::to_string(o.store_round), o.store_weight,
        read_store_examples(o.store, o.store_round), false);
#else
    throw UsageError("data.store: this build has no datastore");
#endif
  }
  if (!o.eval_path.empty()) {
    add(o.eval_path, 1.0, read_sft_examples(o.eval_path, o.prompt_completion_as_text), true);
  }
  core::MixtureOptions mo;
  mo.max_seq_len = o.max_seq_len;
  mo.overlong = o.overlong;
  mo.eval_fraction = o.eval_fraction;
  mo.seed = seed;
  core::Mixture mix = core::build_mixture(std::move(sources), mo);
  for (size_t i = 0; i < mix.sources.size(); ++i) {
    mix.sources[i].skipped_not_kept = not_kept[i];
    mix.sources[i].read += not_kept[i];  // every line read
  }
  return mix;
}

SftRows make_sft_rows(core::Mixture mix, const SftDataOptions& o, const core::Tokenizer& tok,
                      uint64_t seed, bool print) {
  nlohmann::json stats = nlohmann::json::array();
  for (const auto& s : mix.sources) stats.push_back(s.to_json());
  SftRows rows;
  rows.summary = {{"event", "data"},
                  {"train_examples", mix.train.size()},
                  {"eval_examples", mix.eval.size()},
                  {"sources", stats}};
  if (print) std::cout << rows.summary.dump() << std::endl;
  std::vector<core::SourceLoss> losses;
  for (const auto& s : mix.sources) {
    losses.push_back({s.name, s.read - s.skipped_not_kept, s.truncated,
                      s.dropped_long + s.dropped_no_targets});
  }
  core::check_data_loss(losses, o.data_loss, "sft", "data.max_seq_len",
                        print ? &std::cerr : nullptr);
  if (mix.train.empty()) {
    int64_t not_kept = 0;
    for (const auto& s : mix.sources) not_kept += s.skipped_not_kept;
    throw UsageError(not_kept > 0 ? "no training examples left after skipping " +
                                        std::to_string(not_kept) +
                                        " synth lines that were not kept and the length limits"
                                  : "no training examples left after length limits");
  }
  core::PackingOptions popts;
  popts.max_seq_len = o.max_seq_len;
  popts.packing = o.packing;
  popts.seed = seed;
  popts.pad_id = tok.pad_id().value_or(tok.eos_ids().empty() ? 0 : tok.eos_ids().front());
  rows.train = std::make_shared<core::TokenRowDataset>(
      std::make_shared<const std::vector<core::TokenizedExample>>(std::move(mix.train)), popts);
  if (!mix.eval.empty()) {
    popts.shuffle = false;
    rows.eval = std::make_shared<core::TokenRowDataset>(
        std::make_shared<const std::vector<core::TokenizedExample>>(std::move(mix.eval)), popts);
  }
  return rows;
}

}  // namespace posttrain::sft
