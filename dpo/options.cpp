// The DPO config schema (see options.h).
#include "dpo/options.h"

#include <filesystem>

#include "common/error.h"
#include "core/data/data_loss.h"
#include "core/data/sources.h"
#include "core/train/trainer_options.h"

namespace fs = std::filesystem;

namespace posttrain::dpo {
namespace {

using core::ConfigKey;
using T = core::ConfigType;

std::string check_rounds(const nlohmann::json& v) {
  if (v.is_number_integer()) return "";
  if (!v.is_array()) return "expected a round number or a list of them";
  for (const auto& r : v) {
    if (!r.is_number_integer()) return "expected a list of round numbers";
  }
  return "";
}

std::string check_token_list(const nlohmann::json& v) {
  if (!v.is_array()) return "expected a list of token strings";
  for (const auto& t : v) {
    if (!t.is_string() || t.get<std::string>().empty()) return "expected non-empty strings";
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
std::string check_non_negative(const nlohmann::json& v) {
  return v.get<double>() >= 0 ? "" : "must be >= 0";
}
std::string check_smoothing(const nlohmann::json& v) {
  const double x = v.get<double>();
  return x >= 0 && x < 0.5 ? "" : "must be in [0, 0.5)";
}

ConfigKey needing(ConfigKey key, const char* needs) {
  key.needs = needs;
  return key;
}

}  // namespace

core::ConfigSchema dpo_schema() {
  core::ConfigSchema s;
  s.add({"model", "path", T::kPath, nullptr, true, {},
         "Hugging Face folder of the policy to start from (usually the round's SFT model)"});
  s.add({"model", "tokenizer", T::kPath, nullptr, false, {},
         "folder or tokenizer.json of the tokenizer; default: model.path"});
  s.add({"model", "reference", T::kPath, nullptr, false, {},
         "reference model folder (same tokenizer and vocabulary); default: model.path"});

  s.add({"data", "sources", T::kJson, nlohmann::json::array(), false, {},
         "JSONL pair files: [\"a.jsonl\", {\"path\": \"b.jsonl\", \"weight\": 0.5}]; rows in "
         "TRL's forms (prompt/chosen/rejected strings or messages, implicit-prompt "
         "conversations, prompt_input_ids/chosen_input_ids/rejected_input_ids)",
         core::check_data_sources});
  s.add({"data", "store", T::kPath, nullptr, false, {},
         "SQLite store to read preference pairs from (and to cache reference log-probs in)"});
  s.add(needing({"data", "store_rounds", T::kJson, nullptr, false, {},
                 "round or list of rounds whose pairs are read; default: the latest round",
                 check_rounds},
                "data.store"));
  s.add(needing({"data", "min_strength", T::kString, "better", false,
                 {"significantly_better", "better", "slightly_better", "marginally_better", "none"},
                 "weakest labelled strength kept (unlabelled pairs always kept); none = all"},
                "data.store"));
  s.add(needing({"data", "store_weight", T::kFloat, 1.0, false, {},
                 "mixing weight of the store's pairs (as a source weight)", check_positive},
                "data.store"));
  s.add(needing({"data", "near_duplicates", T::kString, "normalized", false,
                 {"off", "exact", "normalized"},
                 "store pairs whose chosen and rejected are the same answer are dropped and "
                 "counted: equal as bytes (exact) or after case/space normalisation"},
                "data.store"));
  s.add(needing({"data", "near_duplicate_similarity", T::kFloat, 0.0, false, {},
                 "> 0: also drop pairs whose word-trigram Jaccard similarity is at least this",
                 check_non_negative},
                "data.store"));
  s.add({"data", "eval_path", T::kPath, nullptr, false, {},
         "JSONL file of held-out pairs (eval_ metrics)"});
  s.add({"data", "eval_fraction", T::kFloat, 0.0, false, {},
         "fraction of each training source held out (seeded) for eval metrics", check_fraction});
  s.add({"data", "max_length", T::kInt, 1024, false, {},
         "tokens of the prompt plus one response; a packed row holds up to twice this",
         check_positive});
  s.add({"data", "max_prompt_length", T::kInt, 512, false, {},
         "prompt tokens kept (from the end, as TRL's keep_end)", check_positive});
  s.add({"data", "overlong", T::kString, "truncate", false, {"truncate", "drop"},
         "pairs over the limits: truncate (prompt keeps its end, responses their start) or drop"});
  core::add_data_loss_keys(&s);
  s.add({"data", "packing", T::kBool, true, false, {},
         "pack several pairs per row (each pair sees only itself)"});
  s.add({"data", "prompt_completion", T::kString, "chat", false, {"chat", "text"},
         "string prompt/chosen/rejected: chat = a user turn and an assistant turn in the chat "
         "template (as SFT); text = raw prompt text, response + end-of-sequence token (TRL)"});
  s.add({"data", "chat_format", T::kString, "auto", false, {"auto", "llama3", "chatml"},
         "chat template; auto = the tokenizer's"});

  s.add({"dpo", "beta", T::kFloat, 0.1, false, {},
         "temperature of the implicit reward beta * (log pi - log ref)", check_positive});
  s.add({"dpo", "loss_type", T::kString, "sigmoid", false, {"sigmoid", "ipo", "hinge"},
         "sigmoid (DPO), ipo (per-token mean log-probs, as TRL), hinge (SLiC)"});
  s.add({"dpo", "label_smoothing", T::kFloat, 0.0, false, {},
         "conservative DPO: probability that a label is flipped (sigmoid only)", check_smoothing});
  s.add({"dpo", "rpo_alpha", T::kFloat, 0.2, false, {},
         "weight of the NLL term on chosen (per target token, SFT's mask); 0 = none",
         check_non_negative});
  s.add({"dpo", "mask_format_tokens", T::kBool, true, false, {},
         "leave the chat template's header and end-of-turn tokens out of the DPO log-probs"});
  s.add({"dpo", "format_tokens", T::kJson, nullptr, false, {},
         "token strings masked inside responses instead of the template's formatting, e.g. "
         "[\"<|eot_id|>\", \"<|start_header_id|>\", \"<|end_header_id|>\"]",
         check_token_list});
  s.add({"dpo", "reference_cache", T::kBool, true, false, {},
         "cache reference log-probs in data.store (off: in OUT/ref_logprobs.jsonl)"});
  s.add({"dpo", "reference_batch_size", T::kInt, 8, false, {},
         "pairs per reference forward pass", check_positive});
  core::add_trainer_keys(&s);
  return s;
}

DpoOptions dpo_options(const nlohmann::json& c) {
  DpoOptions o;
  const auto& m = c.at("model");
  o.model = m.at("path").get<std::string>();
  o.tokenizer = m.at("tokenizer").is_null() ? o.model : m.at("tokenizer").get<std::string>();
  o.reference = m.at("reference").is_null() ? o.model : m.at("reference").get<std::string>();

  const auto& d = c.at("data");
  DpoDataOptions& data = o.data;
  for (const auto& s : d.at("sources")) {
    if (s.is_string()) {
      data.sources.push_back({s.get<std::string>(), 1.0});
    } else {
      data.sources.push_back({s.at("path").get<std::string>(), s.value("weight", 1.0)});
    }
  }
  if (!d.at("store").is_null()) data.store = d.at("store").get<std::string>();
  const auto& rounds = d.at("store_rounds");
  if (rounds.is_number_integer()) data.store_rounds = {rounds.get<int>()};
  if (rounds.is_array()) data.store_rounds = rounds.get<std::vector<int>>();
  data.min_strength = d.at("min_strength").get<std::string>();
  data.store_weight = d.at("store_weight").get<double>();
  data.near_duplicates = d.at("near_duplicates").get<std::string>();
  data.near_duplicate_similarity = d.at("near_duplicate_similarity").get<double>();
  if (data.sources.empty() && data.store.empty()) {
    throw InputError(Location{"", 0, "data.sources"},
                     "no training data: give data.sources or data.store");
  }
  if (!d.at("eval_path").is_null()) data.eval_path = d.at("eval_path").get<std::string>();
  data.eval_fraction = d.at("eval_fraction").get<double>();
  data.truncation.max_length = d.at("max_length").get<int64_t>();
  data.truncation.max_prompt_length = d.at("max_prompt_length").get<int64_t>();
  data.truncation.drop = d.at("overlong").get<std::string>() == "drop";
  if (data.truncation.max_prompt_length >= data.truncation.max_length) {
    throw InputError(Location{"", 0, "data.max_prompt_length"},
                     "must be below data.max_length (room for the responses)");
  }
  data.packing = d.at("packing").get<bool>();
  data.prompt_completion_as_text = d.at("prompt_completion").get<std::string>() == "text";
  data.chat_format = d.at("chat_format").get<std::string>();
  data.data_loss = core::data_loss_policy(c);

  const auto& p = c.at("dpo");
  o.loss.beta = p.at("beta").get<double>();
  o.loss.type = parse_loss_type(p.at("loss_type").get<std::string>());
  o.loss.label_smoothing = p.at("label_smoothing").get<double>();
  if (o.loss.label_smoothing > 0 && o.loss.type != LossType::kSigmoid) {
    throw InputError(Location{"", 0, "dpo.label_smoothing"},
                     std::string("applies to loss_type sigmoid only, not ") +
                         loss_type_name(o.loss.type));
  }
  o.rpo_alpha = p.at("rpo_alpha").get<double>();
  o.mask_format_tokens = p.at("mask_format_tokens").get<bool>();
  if (!p.at("format_tokens").is_null()) {
    o.format_tokens = p.at("format_tokens").get<std::vector<std::string>>();
  }
  o.reference_cache = p.at("reference_cache").get<bool>();
  o.reference_batch_size = p.at("reference_batch_size").get<int64_t>();
  return o;
}

}  // namespace posttrain::dpo
