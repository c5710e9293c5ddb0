// The reward stage's config schema (see config.h).
#include "reward/config.h"

#include <filesystem>

#include "common/error.h"
#include "core/data/data_loss.h"
#include "core/data/sources.h"
#include "core/train/trainer_options.h"

namespace fs = std::filesystem;

namespace posttrain::reward {

using core::ConfigKey;
using core::ConfigType;

namespace {

std::string check_rounds(const nlohmann::json& v) {
  if (!v.is_array()) return std::string("expected a list of rounds, got ") + v.type_name();
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number_integer() || v[i].get<int64_t>() < 0) {
      return "[" + std::to_string(i) + "]: expected an integer round >= 0";
    }
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

std::string check_unit(const nlohmann::json& v) {
  const double x = v.get<double>();
  return x >= 0 && x <= 1 ? "" : "must be in [0, 1] (0 = off)";
}

std::string check_non_negative(const nlohmann::json& v) {
  return v.get<double>() >= 0 ? "" : "must be >= 0";
}

}  // namespace

core::ConfigSchema reward_schema() {
  using T = ConfigType;
  core::ConfigSchema s;
  s.add({"model", "path", T::kPath, nullptr, true, {},
         "Hugging Face folder to start from: a causal LM (a fresh score head is drawn, seeded by "
         "training.seed, std = initializer_range) or a reward model "
         "(LlamaForSequenceClassification)"});
  s.add({"model", "tokenizer", T::kPath, nullptr, false, {},
         "folder or tokenizer.json of the tokenizer; default: model.path"});
  s.add({"model", "pad_token_id", T::kInt, nullptr, false, {},
         "the reserved pad token saved in config.json (never EOS or end-of-turn: the reward is "
         "read at the last non-pad token); default: the tokenizer's pad token, else a reserved "
         "special token such as <|finetune_right_pad_id|>"});
  s.add({"data", "sources", T::kJson, nlohmann::json::array(), false, {},
         "JSONL preference files (TRL prompt/chosen/rejected, strings or message lists; "
         "{\"prompt\", \"responses\", \"ranking\"} rows): [\"a.jsonl\", {\"path\": \"b.jsonl\", "
         "\"weight\": 0.5}]",
         core::check_data_sources});
  s.add({"data", "store", T::kPath, nullptr, false, {},
         "SQLite store whose preference pairs are read (with their edits: edited > chosen > "
         "rejected)"});
  ConfigKey rounds{"data", "store_rounds", T::kJson, nullptr, false, {},
                   "rounds of data.store to read, e.g. [0, 1, 2] (Llama 3 trains the reward model "
                   "on all rounds so far); default: every round",
                   check_rounds};
  rounds.needs = "data.store";
  s.add(std::move(rounds));
  ConfigKey store_weight{"data", "store_weight", T::kFloat, 1.0, false, {},
                         "mixing weight of the store's pairs (as a source weight)",
                         check_positive};
  store_weight.needs = "data.store";
  s.add(std::move(store_weight));
  s.add({"data", "min_strength", T::kString, "better", false,
         {"significantly_better", "better", "slightly_better", "marginally_better", "any"},
         "keep pairs labelled at least this strong, plus unlabelled pairs (the store's "
         "PairFilter rule; Llama 3 kept significantly_better and better); any = no filter"});
  s.add({"data", "near_duplicate", T::kString, "normalized", false,
         {"normalized", "exact", "off"},
         "drop pairs whose responses are the same text: after case/whitespace normalisation, "
         "byte-identical only, or never (counted in the data log line)"});
  s.add({"data", "near_duplicate_similarity", T::kFloat, 0.0, false, {},
         "also drop pairs whose responses' word-trigram Jaccard similarity is at least this; 0 = "
         "off",
         check_unit});
  s.add({"data", "eval_path", T::kPath, nullptr, false, {},
         "JSONL preference file for held-out accuracy"});
  s.add({"data", "eval_fraction", T::kFloat, 0.0, false, {},
         "fraction of each training source's rankings held out (seeded) for eval",
         check_fraction});
  s.add({"data", "max_seq_len", T::kInt, 2048, false, {},
         "token limit of one prompt + response sequence", check_positive});
  s.add({"data", "overlong", T::kString, "truncate", false, {"truncate", "drop"},
         "rankings with a longer sequence: cut each sequence to max_seq_len (the reward is then "
         "read at its last kept token) or drop the ranking (counted in the data log line)"});
  core::add_data_loss_keys(&s);
  s.add({"data", "layout", T::kString, "one_row", false, {"one_row", "separate"},
         "one_row = Llama 3's layout: the prompt and its responses (seeded shuffled order) in "
         "one row, each response attending to the prompt and itself; separate = one sequence "
         "per response (the same rewards and gradients)"});
  s.add({"data", "prompt_completion", T::kString, "chat", false, {"chat", "text"},
         "rows whose prompt and responses are all strings: chat = a user turn and an assistant "
         "turn in the chat template; text = raw prompt text then response + end-of-sequence"});
  s.add({"data", "chat_format", T::kString, "auto", false, {"auto", "llama3", "chatml"},
         "chat template; auto = the tokenizer's"});
  s.add({"loss", "margin", T::kBool, false, false, {},
         "Llama 2's margin: -log sigmoid(r_chosen - r_rejected - m(strength)), m from "
         "datastore/strength.h (significantly_better 1, better 2/3, slightly_better 1/3, "
         "marginally_better 0, unlabelled 0)"});
  s.add({"loss", "center_rewards_coefficient", T::kFloat, 0.0, false, {},
         "TRL's reward centering: adds c * (r_chosen + r_rejected)^2 per pair; 0 = off",
         check_non_negative});
  core::add_trainer_keys(&s);
  return s;
}

RewardDataOptions reward_data_options(const nlohmann::json& c) {
  const auto& d = c.at("data");
  RewardDataOptions o;
  for (const auto& s : d.at("sources")) {
    if (s.is_string()) {
      o.sources.push_back({s.get<std::string>(), 1.0});
    } else {
      o.sources.push_back({s.at("path").get<std::string>(), s.value("weight", 1.0)});
    }
  }
  if (!d.at("store").is_null()) {
    o.store = d.at("store").get<std::string>();
    if (!d.at("store_rounds").is_null()) o.store_rounds = d.at("store_rounds").get<std::vector<int>>();
  }
  o.store_weight = d.at("store_weight").get<double>();
  if (o.sources.empty() && o.store.empty()) {
    throw InputError(Location{"", 0, "data.sources"},
                     "no training data: give data.sources or data.store");
  }
  if (!d.at("eval_path").is_null()) o.eval_path = d.at("eval_path").get<std::string>();
  o.eval_fraction = d.at("eval_fraction").get<double>();
  o.max_seq_len = d.at("max_seq_len").get<int64_t>();
  o.overlong = core::parse_overlong_policy(d.at("overlong").get<std::string>());
  o.strings_as_text = d.at("prompt_completion").get<std::string>() == "text";
  o.chat_format = d.at("chat_format").get<std::string>();
  const std::string ms = d.at("min_strength").get<std::string>();
  o.min_strength = ms == "any" ? std::nullopt : datastore::parse_strength(ms);
  o.near_duplicate.rule = core::parse_near_duplicate_rule(d.at("near_duplicate").get<std::string>());
  o.near_duplicate.similarity = d.at("near_duplicate_similarity").get<double>();
  o.layout = parse_layout(d.at("layout").get<std::string>());
  o.data_loss = core::data_loss_policy(c);
  return o;
}

PairwiseLossOptions reward_loss_options(const nlohmann::json& c) {
  PairwiseLossOptions o;
  o.use_margin = c.at("loss").at("margin").get<bool>();
  o.center_coefficient = c.at("loss").at("center_rewards_coefficient").get<double>();
  return o;
}

}  // namespace posttrain::reward
