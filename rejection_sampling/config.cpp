// The sample stage's config schema (see config.h).
#include "rejection_sampling/config.h"

#include <limits>

#include "common/error.h"

namespace posttrain::rejection_sampling {

using core::ConfigKey;
using core::ConfigType;
using nlohmann::json;

namespace {

std::string check_string_list(const json& v) {
  if (!v.is_array()) return std::string("expected a list of strings, got ") + v.type_name();
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string() || v[i].get<std::string>().empty()) {
      return "[" + std::to_string(i) + "]: expected a non-empty string";
    }
  }
  return "";
}

std::string check_ranking(const json& v) {
  if (auto problem = check_string_list(v); !problem.empty()) return problem;
  if (v.empty()) return "needs at least one key (verified, reward, logprob, shorter)";
  for (size_t i = 0; i < v.size(); ++i) {
    try {
      parse_rank_key(v[i].get<std::string>());
    } catch (const UsageError& e) {
      return "[" + std::to_string(i) + "]: " + e.what();
    }
  }
  return "";
}

std::string check_range(const json& v, double lo, double hi, bool lo_open, const char* text) {
  const double x = v.get<double>();
  const bool ok = (lo_open ? x > lo : x >= lo) && x <= hi;
  return ok ? "" : std::string("must be in ") + text;
}

void add_model_keys(core::ConfigSchema& s) {
  using T = ConfigType;
  s.add({"model", "path", T::kPath, nullptr, true, {},
         "the policy that samples: a Hugging Face causal LM folder (with tokenizer.json); its "
         "absolute path is recorded as the responses' checkpoint"});
  s.add({"model", "chat_format", T::kString, "auto", false, {"auto", "llama3", "chatml"},
         "chat template of the prompts (and of SFT on the selections); auto = the tokenizer's"});
  s.add({"model", "device", T::kString, "cpu", false, {"cpu", "cuda"}, "device of both models"});
  s.add({"model", "dtype", T::kString, "float32", false, {"float32", "bfloat16"},
         "weights and activations of both models"});
  s.add({"reward_model", "path", T::kPath, nullptr, false, {},
         "reward model (LlamaForSequenceClassification) scoring every candidate as `reward "
         "score` scores a prompt + completion row; stored under its absolute path"});
  ConfigKey rb{"reward_model", "batch_size", T::kInt, 8, false, {},
               "candidates per reward-model forward pass", core::int_range(1, 4096)};
  rb.needs = "reward_model.path";
  s.add(std::move(rb));
}

void add_prompt_keys(core::ConfigSchema& s) {
  using T = ConfigType;
  s.add({"prompts", "path", T::kPath, nullptr, false, {},
         "JSONL prompts: prompt (string or messages) or messages, optional id, kind "
         "(math|code|tool) and its checker fields as `verify` reads them (answer; tests; tools + "
         "answer)"});
  s.add({"prompts", "store", T::kPath, nullptr, false, {},
         "store whose synthetic problems of prompts.store_round are the prompts (kind and "
         "checker as `synth` recorded them)"});
  ConfigKey round{"prompts", "store_round", T::kInt, 0, false, {},
                  "round of prompts.store's synthetic problems", core::int_range(0, 1 << 30)};
  round.needs = "prompts.store";
  s.add(std::move(round));
  s.add({"prompts", "limit", T::kInt, 0, false, {}, "first N prompts only; 0 = all",
         core::int_range(0, int64_t{1} << 40)});
}

void add_sampling_keys(core::ConfigSchema& s) {
  using T = ConfigType;
  s.add({"sampling", "samples", T::kInt, 10, false, {},
         "candidates per prompt (K; Llama 3 used 10 to 30)", core::int_range(1, 1024)});
  s.add({"sampling", "temperature", T::kFloat, 1.0, false, {}, "0 = greedy",
         [](const json& v) { return check_range(v, 0, 100, false, "[0, 100]"); }});
  s.add({"sampling", "top_p", T::kFloat, 1.0, false, {}, "nucleus mass",
         [](const json& v) { return check_range(v, 0, 1, true, "(0, 1]"); }});
  s.add({"sampling", "top_k", T::kInt, 0, false, {}, "keep the k most likely tokens; 0 = off",
         core::int_range(0, int64_t{1} << 30)});
  s.add({"sampling", "min_p", T::kFloat, 0.0, false, {}, "drop tokens below min_p x the top one",
         [](const json& v) { return v.get<double>() >= 0 && v.get<double>() < 1 ? "" : "must be in [0, 1)"; }});
  s.add({"sampling", "max_new_tokens", T::kInt, 256, false, {}, "tokens per candidate at most",
         core::int_range(1, 1 << 20)});
  s.add({"sampling", "seed", T::kInt, 0, false, {},
         "base seed: prompt i's sample k uses sample_seed(sample_seed(seed, i), k), i counted "
         "over the whole prompt list, so a resumed run draws what an uninterrupted one draws",
         core::int_range(0, std::numeric_limits<int64_t>::max())});
  s.add({"sampling", "stop", T::kJson, json::array(), false, {},
         "stop strings (the text is cut before them), besides the model's end-of-turn ids",
         check_string_list});
  s.add({"sampling", "system_prompts", T::kJson, json::array(), false, {},
         "system prompts; each prompt without its own system message gets one drawn from this "
         "list (seeded by sampling.seed and the prompt's position); empty = none",
         check_string_list});
}

void add_rest_keys(core::ConfigSchema& s) {
  using T = ConfigType;
  s.add({"ranking", "order", T::kJson, json::array({"verified", "reward"}), false, {},
         "keys compared in order, higher first: verified (1/0), reward, logprob, shorter; "
         "ties go to the earlier sample",
         check_ranking});
  s.add({"ranking", "require_verified", T::kBool, true, false, {},
         "a prompt with a verifier gets an SFT selection only when its best candidate passed"});
  s.add({"verifier", "timeout", T::kFloat, 2.0, false, {}, "sandbox seconds per code run",
         [](const json& v) { return check_range(v, 0, 600, true, "(0, 600]"); }});
  s.add({"verifier", "memory_mb", T::kInt, 512, false, {}, "sandbox address-space limit",
         core::int_range(16, 1 << 20)});
  s.add({"verifier", "workers", T::kInt, 2, false, {},
         "code/tool candidates checked in parallel (sandbox runs); math checks run inline",
         core::int_range(1, 64)});
  s.add({"verifier", "check_steps", T::kBool, true, false, {},
         "math: fail answers whose shown equations are wrong"});
  s.add({"verifier", "require_tool_use", T::kBool, false, false, {},
         "tool: fail answers that used no tool successfully"});
  s.add({"verifier", "docs", T::kPath, nullptr, false, {},
         "tool: lookup over the .txt/.md files of this folder (default: built-in documents)"});
  s.add({"output", "store", T::kString, nullptr, true, {},
         "store receiving prompts, responses, scores, selections and pairs (created if missing)"});
  s.add({"output", "round", T::kInt, 0, false, {},
         "round of the responses, selections and pairs", core::int_range(0, 1 << 30)});
  s.add({"output", "dir", T::kString, nullptr, true, {},
         "folder for candidates.jsonl and summary.json"});
  s.add({"engine", "page_size", T::kInt, 16, false, {}, "tokens per KV-cache page",
         core::int_range(1, 4096)});
  s.add({"engine", "kv_cache_mb", T::kInt, 1024, false, {}, "KV-cache pool in MiB",
         core::int_range(1, 1 << 22)});
  s.add({"engine", "max_batch_tokens", T::kInt, 2048, false, {}, "tokens per forward step",
         core::int_range(1, 1 << 22)});
  s.add({"engine", "max_running", T::kInt, 256, false, {}, "sequences decoding at once",
         core::int_range(1, 1 << 20)});
  s.add({"engine", "chunk_prompts", T::kInt, 256, false, {},
         "prompts handed to the engine at once; each prompt's results commit as it completes",
         core::int_range(1, 1 << 20)});
}

}  // namespace

core::ConfigSchema sample_schema() {
  core::ConfigSchema s;
  add_model_keys(s);
  add_prompt_keys(s);
  add_sampling_keys(s);
  add_rest_keys(s);
  return s;
}

SampleOptions sample_options(const json& c) {
  SampleOptions o;
  const auto& m = c.at("model");
  o.model_dir = m.at("path").get<std::string>();
  o.chat_format = m.at("chat_format").get<std::string>();
  o.device = m.at("device").get<std::string>();
  o.dtype = m.at("dtype").get<std::string>();
  const auto& rm = c.at("reward_model");
  if (!rm.at("path").is_null()) o.reward_model_dir = rm.at("path").get<std::string>();
  o.reward_batch_size = rm.at("batch_size").get<int64_t>();

  const auto& p = c.at("prompts");
  if (!p.at("path").is_null()) o.prompts_path = p.at("path").get<std::string>();
  if (!p.at("store").is_null()) o.prompts_store = p.at("store").get<std::string>();
  o.prompts_store_round = p.at("store_round").get<int>();
  o.prompts_limit = p.at("limit").get<int64_t>();
  if (o.prompts_path.empty() == o.prompts_store.empty()) {
    throw InputError(Location{"", 0, "prompts.path"},
                     "give exactly one prompt source: prompts.path or prompts.store");
  }

  const auto& s = c.at("sampling");
  o.samples = s.at("samples").get<int64_t>();
  o.seed = s.at("seed").get<uint64_t>();
  o.sampling.temperature = s.at("temperature").get<double>();
  o.sampling.top_p = s.at("top_p").get<double>();
  o.sampling.top_k = s.at("top_k").get<int64_t>();
  o.sampling.min_p = s.at("min_p").get<double>();
  o.sampling.max_new_tokens = s.at("max_new_tokens").get<int64_t>();
  o.sampling.stop_strings = s.at("stop").get<std::vector<std::string>>();
  o.system_prompts = s.at("system_prompts").get<std::vector<std::string>>();

  const auto& r = c.at("ranking");
  o.ranking.keys.clear();
  for (const auto& k : r.at("order")) o.ranking.keys.push_back(parse_rank_key(k.get<std::string>()));
  o.ranking.require_verified = r.at("require_verified").get<bool>();
  for (RankKey k : o.ranking.keys) {
    if (k == RankKey::kReward && o.reward_model_dir.empty()) {
      throw InputError(Location{"", 0, "ranking.order"},
                       "ranks by reward but reward_model.path is not set");
    }
  }

  const auto& v = c.at("verifier");
  o.verifier.timeout_seconds = v.at("timeout").get<double>();
  o.verifier.memory_mb = v.at("memory_mb").get<int64_t>();
  o.verifier.workers = v.at("workers").get<int>();
  o.verifier.check_steps = v.at("check_steps").get<bool>();
  o.verifier.require_tool_use = v.at("require_tool_use").get<bool>();
  if (!v.at("docs").is_null()) o.verifier.docs_dir = v.at("docs").get<std::string>();

  const auto& out = c.at("output");
  o.store = out.at("store").get<std::string>();
  o.round = out.at("round").get<int>();
  o.out_dir = out.at("dir").get<std::string>();

  const auto& e = c.at("engine");
  o.engine.page_size = e.at("page_size").get<int64_t>();
  o.engine.kv_cache_bytes = e.at("kv_cache_mb").get<int64_t>() << 20;
  o.engine.max_batch_tokens = e.at("max_batch_tokens").get<int64_t>();
  o.engine.max_running = e.at("max_running").get<int64_t>();
  o.chunk_prompts = e.at("chunk_prompts").get<int64_t>();
  return o;
}

}  // namespace posttrain::rejection_sampling
