// `posttrain generate`: K samples per JSONL row from a causal LM through the batched engine
// (core/generate). A row gives input_ids (used as given), text (tokenized as `logprobs` does),
// prompt (a string: one user turn; a list: messages) or messages, both rendered with the chat
// template and the assistant header opened. Every row is read and checked before any
// generation, and the output goes to OUT.tmp, renamed to OUT at the end, so a bad line or an
// interrupted run never leaves a half-written OUT. Output rows come in input order: the input
// fields, `prompt_ids` (rows not given as input_ids) and `samples`.
#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "app/command.h"
#include "app/options.h"
#include "common/error.h"
#include "common/jsonl.h"
#include "common/progress.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/generate/engine.h"
#include "core/generate/sampler.h"
#include "core/generate/stop_tokens.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"

namespace posttrain::app {
namespace {

using nlohmann::json;
namespace gen = core::generate;

// The prompt ids of one row; the tokenizer comes from the model folder when a row needs it.
class PromptReader {
 public:
  PromptReader(std::optional<core::Tokenizer> tok, std::optional<core::ChatFormat> format,
               std::string model_dir)
      : tok_(std::move(tok)), format_(format), dir_(std::move(model_dir)) {}

  std::vector<int64_t> ids(const json& row, const JsonlReader& reader) {
    std::vector<int64_t> ids;
    std::string field;
    if (row.contains("input_ids")) {
      field = "input_ids";
      ids = require_int_list(row, field, reader.where(field));
    } else if (row.contains("text")) {
      field = "text";
      ids = tokenizer(reader, field).encode(require_string(row, field, reader.where(field)), true);
    } else if (row.contains("prompt") || row.contains("messages")) {
      field = row.contains("prompt") ? "prompt" : "messages";
      const auto& v = row[field];
      std::vector<core::ChatMessage> messages;
      if (field == "prompt" && v.is_string()) {
        messages.push_back({"user", v.get<std::string>(), -1});
      } else if (v.is_array()) {
        messages = core::parse_messages(v, reader.where(field));
      } else {
        throw InputError(reader.where(field), field == "prompt"
                                                  ? "expected a string or a list of messages"
                                                  : "expected a list of messages");
      }
      if (messages.empty()) throw InputError(reader.where(field), "no messages");
      auto& tok = tokenizer(reader, field);
      ids = core::render_chat(tok, messages, format_.value_or(tok.chat_format()), true).ids;
    } else {
      throw InputError(reader.where(), "a row needs 'input_ids', 'text', 'prompt' or 'messages'");
    }
    if (ids.empty()) throw InputError(reader.where(field), "empty prompt: no tokens");
    last_field_ = field;
    return ids;
  }
  const std::string& last_field() const { return last_field_; }

 private:
  core::Tokenizer& tokenizer(const JsonlReader& reader, const std::string& field) {
    if (!tok_) {
      throw InputError(reader.where(field),
                       "needs the model's tokenizer, and " + dir_ + " has no tokenizer.json");
    }
    return *tok_;
  }

  std::optional<core::Tokenizer> tok_;
  std::optional<core::ChatFormat> format_;
  std::string dir_;
  std::string last_field_;
};

json sample_json(const gen::GeneratedSample& s, bool with_text) {
  json j;
  j["output_ids"] = s.output_ids;
  if (with_text) j["text"] = s.text;
  j["finish_reason"] = gen::finish_reason_name(s.finish_reason);
  if (!s.stop_string.empty()) j["stop"] = s.stop_string;
  j["logprob"] = s.logprob;
  j["token_logprobs"] = s.token_logprobs;
  j["seed"] = s.seed;
  return j;
}

// Writes finished rows in input order as they complete.
class OrderedWriter {
 public:
  OrderedWriter(JsonlWriter& out, size_t rows) : out_(out), pending_(rows) {}
  void put(size_t i, json row) {
    pending_[i] = std::move(row);
    while (next_ < pending_.size() && pending_[next_]) {
      out_.write(*pending_[next_]);
      pending_[next_++].reset();
    }
  }

 private:
  JsonlWriter& out_;
  std::vector<std::optional<json>> pending_;
  size_t next_ = 0;
};

struct Settings {
  gen::SamplingParams params;
  int64_t samples = 1;
  uint64_t seed = 0;
};

Settings read_settings(const po::variables_map& vm) {
  Settings s;
  s.samples = vm["samples"].as<int64_t>();
  if (s.samples < 1) throw UsageError("--samples must be >= 1, got " + std::to_string(s.samples));
  auto& p = s.params;
  p.max_new_tokens = vm["max-new-tokens"].as<int64_t>();
  p.temperature = vm["temperature"].as<double>();
  p.top_p = vm["top-p"].as<double>();
  p.top_k = vm["top-k"].as<int64_t>();
  p.min_p = vm["min-p"].as<double>();
  if (vm.count("stop")) p.stop_strings = vm["stop"].as<std::vector<std::string>>();
  s.seed = vm["seed"].as<uint64_t>();
  try {
    gen::validate(p);
  } catch (const UsageError& e) {
    throw UsageError(std::string("invalid sampling option: ") + e.what());
  }
  return s;
}

int run_generate(const std::vector<std::string>& args) {
  po::options_description desc("options");
  desc.add_options()("model", po::value<std::string>()->required(),
                     "checkpoint folder (causal LM)")(
      "input", po::value<std::string>()->required(),
      "JSONL rows with input_ids, text, prompt or messages")(
      "samples", po::value<int64_t>()->default_value(1), "samples per row (K)")(
      "max-new-tokens", po::value<int64_t>()->default_value(256), "tokens generated at most")(
      "temperature", po::value<double>()->default_value(1.0), "0 = greedy")(
      "top-p", po::value<double>()->default_value(1.0), "nucleus mass in (0, 1]")(
      "top-k", po::value<int64_t>()->default_value(0), "keep the k most likely tokens (0 = off)")(
      "min-p", po::value<double>()->default_value(0.0), "drop tokens below min-p x the top one")(
      "seed", po::value<uint64_t>()->default_value(0),
      "base seed (a row's own integer 'seed' field overrides it)")(
      "stop", po::value<std::vector<std::string>>()->composing(),
      "stop string (repeatable; the text is cut before it)")(
      "ignore-eos", po::bool_switch(), "do not stop at the model's end-of-sequence ids")(
      "device", po::value<std::string>()->default_value("cpu"), "cpu|cuda")(
      "dtype", po::value<std::string>()->default_value("float32"), "float32|bfloat16")(
      "chat-template", po::value<std::string>(),
      "llama3|chatml for prompt/messages rows (default: from the tokenizer)")(
      "page-size", po::value<int64_t>()->default_value(16), "tokens per KV-cache page")(
      "kv-cache-mb", po::value<int64_t>()->default_value(1024), "KV-cache pool size in MiB")(
      "max-batch-tokens", po::value<int64_t>()->default_value(2048), "tokens per forward step")(
      "max-running", po::value<int64_t>()->default_value(256), "sequences decoding at once")(
      "no-prefix-sharing", po::bool_switch(),
      "prefill a row's prompt once per sample instead of once per row");
  add_output_option(desc, "JSONL: the input fields plus samples");
  po::variables_map vm;
  if (!parse_options("usage: posttrain generate --model DIR --input IN.jsonl --output OUT.jsonl "
                     "[options]\nSamples K completions per row; each output row adds "
                     "samples: [{output_ids, text, finish_reason, logprob, token_logprobs, seed}].",
                     desc, args, &vm)) {
    return 0;
  }
  const std::string out_path = require_output(vm, "generate");
  const std::string model_dir = vm["model"].as<std::string>();
  const std::string dev_name = vm["device"].as<std::string>();
  const std::string dtype_name = vm["dtype"].as<std::string>();
  if (dev_name != "cpu" && dev_name != "cuda") throw UsageError("--device must be cpu or cuda");
  if (dev_name == "cuda" && !at::hasCUDA()) throw UsageError("--device cuda: no CUDA device");
  if (dtype_name != "float32" && dtype_name != "bfloat16") {
    throw UsageError("--dtype must be float32 or bfloat16");
  }
  Settings settings = read_settings(vm);
  gen::EngineOptions opts;
  opts.page_size = vm["page-size"].as<int64_t>();
  opts.kv_cache_bytes = vm["kv-cache-mb"].as<int64_t>() << 20;
  opts.max_batch_tokens = vm["max-batch-tokens"].as<int64_t>();
  opts.max_running = vm["max-running"].as<int64_t>();
  opts.share_prefix = !vm["no-prefix-sharing"].as<bool>();
  if (opts.page_size < 1 || opts.kv_cache_bytes <= 0 || opts.max_batch_tokens < 1 ||
      opts.max_running < 1) {
    throw UsageError(
        "--page-size, --kv-cache-mb, --max-batch-tokens and --max-running must be "
        "positive");
  }
  std::optional<core::ChatFormat> format;
  if (vm.count("chat-template")) {
    format = core::parse_chat_format(vm["chat-template"].as<std::string>());
  }

  const auto config = core::load_config(model_dir);
  if (config.kind == core::ModelKind::kRewardModel) {
    throw UsageError(model_dir + " is a reward model; generate needs a causal language model");
  }
  std::optional<core::Tokenizer> tok;
  if (std::filesystem::exists(model_dir + "/tokenizer.json")) {
    tok = core::Tokenizer::load_dir(model_dir);
  }
  if (!settings.params.stop_strings.empty() && !tok) {
    throw UsageError("--stop needs the model's tokenizer; " + model_dir + " has none");
  }
  if (!vm["ignore-eos"].as<bool>()) {
    settings.params.stop_token_ids = gen::model_stop_token_ids(model_dir, config);
  }

  const at::Device device(dev_name == "cuda" ? at::kCUDA : at::kCPU);
  auto model =
      core::load_model(model_dir, device, dtype_name == "bfloat16" ? at::kBFloat16 : at::kFloat);
  model->eval();
  gen::Detokenizer detok;
  if (tok) detok = [t = *tok](const std::vector<int64_t>& ids) { return t.decode(ids); };
  gen::Engine engine(*model, opts, detok);

  // Read and check every row before generating anything.
  const std::string in_path = vm["input"].as<std::string>();
  JsonlReader reader(in_path);
  PromptReader prompts(tok, format, model_dir);
  std::vector<json> rows;
  std::vector<gen::GenerationRequest> requests;
  json row;
  while (reader.next(&row)) {
    gen::GenerationRequest r;
    r.prompt = prompts.ids(row, reader);
    const std::string field = prompts.last_field();
    for (size_t i = 0; i < r.prompt.size(); ++i) {
      if (r.prompt[i] < 0 || r.prompt[i] >= config.vocab_size) {
        throw InputError(
            reader.where(field == "input_ids" ? "input_ids[" + std::to_string(i) + "]" : field),
            "token id " + std::to_string(r.prompt[i]) + " outside the vocabulary [0, " +
                std::to_string(config.vocab_size) + ")");
      }
    }
    uint64_t base = gen::sample_seed(settings.seed, static_cast<int64_t>(rows.size()));
    if (row.contains("seed")) {
      base = static_cast<uint64_t>(require_int(row, "seed", reader.where("seed")));
    }
    for (int64_t k = 0; k < settings.samples; ++k) r.seeds.push_back(gen::sample_seed(base, k));
    r.params = settings.params;
    try {
      engine.check(r);
    } catch (const UsageError& e) {
      throw InputError(reader.where(field), e.what());
    }
    // Rows given as text or chat also get the prompt's ids (what the samples continue).
    if (field != "input_ids") row["prompt_ids"] = r.prompt;
    requests.push_back(std::move(r));
    rows.push_back(std::move(row));
  }

  const bool to_stdout = out_path == "-";
  const std::string tmp_path = to_stdout ? out_path : out_path + ".tmp";
  JsonlWriter writer(tmp_path);
  OrderedWriter ordered(writer, rows.size());
  const int64_t total = static_cast<int64_t>(requests.size()) * settings.samples;
  Progress progress("generate", total);
  engine.run(
      requests,
      [&](size_t i, std::vector<gen::GeneratedSample> samples) {
        json out = rows[i];
        out["samples"] = json::array();
        for (const auto& s : samples) out["samples"].push_back(sample_json(s, tok.has_value()));
        ordered.put(i, std::move(out));
      },
      [&](const gen::EngineStats& st) {
        std::ostringstream extra;
        extra.precision(1);
        extra << std::fixed << st.generated_tokens / std::max(st.seconds, 1e-9) << " tok/s";
        progress.update(st.finished_samples, extra.str());
      });
  writer.close();
  if (!to_stdout) std::filesystem::rename(tmp_path, out_path);
  progress.finish();
  const auto& st = engine.stats();
  std::ostringstream line;
  line.precision(1);
  line << std::fixed << "generate: " << rows.size() << " rows, " << st.finished_samples
       << " samples, " << st.generated_tokens << " new tokens in " << st.seconds << " s ("
       << st.generated_tokens / std::max(st.seconds, 1e-9) << " tokens/s; prefill "
       << st.prefill_tokens << " tokens, peak " << st.peak_pages << "/" << engine.num_pages()
       << " pages) into " << out_path << "\n";
  std::cerr << line.str();
  return 0;
}

}  // namespace

POSTTRAIN_COMMAND("generate", "K samples per prompt from a causal LM (batched, paged KV cache)",
                  run_generate);

}  // namespace posttrain::app
