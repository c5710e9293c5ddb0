// `posttrain logprobs`: per-token log-probs of JSONL rows under a causal LM. A row gives
// input_ids, or text (tokenized with the model's tokenizer, BOS as its post-processor says), or
// messages (rendered with the chat template). Rows are scored in right-padded batches with an
// attention mask, so batching never changes a row's numbers; each output line repeats the
// input fields and adds input_ids and token_logprobs (len(input_ids) - 1 floats).
#include <ATen/Context.h>

#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "app/command.h"
#include "app/options.h"
#include "common/error.h"
#include "common/jsonl.h"
#include "common/progress.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/scoring.h"
#include "core/data/row_checks.h"
#include "core/tokenizer/chat_template.h"
#include "core/tokenizer/tokenizer.h"

namespace posttrain::app {
namespace {

using nlohmann::json;

struct Row {
  json fields;
  std::vector<int64_t> ids;
};

// Tokens of one input row; the tokenizer is loaded on first need.
class RowTokens {
 public:
  RowTokens(std::string model_dir, std::optional<core::ChatFormat> format, int64_t vocab)
      : dir_(std::move(model_dir)), format_(format), vocab_(vocab) {}

  std::vector<int64_t> ids(const json& row, const JsonlReader& reader) {
    std::vector<int64_t> ids;
    std::string field;
    if (row.contains("input_ids")) {
      field = "input_ids";
      ids = require_int_list(row, "input_ids", reader.where("input_ids"));
      for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] >= vocab_) {
          throw InputError(reader.where("input_ids[" + std::to_string(i) + "]"),
                           "token id " + std::to_string(ids[i]) + " outside the vocabulary [0, " +
                               std::to_string(vocab_) + ")");
        }
      }
      if (row.contains("text") && !row["text"].is_null()) {  // the ids are scored: must agree
        core::check_text_matches_ids(tokenizer(reader),
                                     require_string(row, "text", reader.where("text")), ids,
                                     reader.where());
      }
    } else if (row.contains("text")) {
      field = "text";
      const std::string text = require_string(row, "text", reader.where("text"));
      ids = tokenizer(reader).encode(text, true);
    } else if (row.contains("messages")) {
      field = "messages";
      const auto messages = core::parse_messages(row["messages"], reader.where("messages"));
      auto& tok = tokenizer(reader);
      ids = core::render_chat(tok, messages, format_.value_or(tok.chat_format()), false).ids;
    } else {
      throw InputError(reader.where(), "a row needs 'input_ids', 'text' or 'messages'");
    }
    if (ids.empty()) throw InputError(reader.where(field), "no tokens to score");
    return ids;
  }

 private:
  core::Tokenizer& tokenizer(const JsonlReader& reader) {
    if (!tok_) {
      try {
        tok_ = core::Tokenizer::load_dir(dir_);
      } catch (const Error& e) {
        throw UsageError(reader.where().describe() + ": needs the model's tokenizer: " + e.what());
      }
    }
    return *tok_;
  }

  std::string dir_;
  std::optional<core::ChatFormat> format_;
  int64_t vocab_;
  std::optional<core::Tokenizer> tok_;
};

// Scores one batch (core/scoring.h: right-padded, so batching never changes a row's numbers)
// and writes its rows.
void score_batch(core::LlamaModelImpl& model, std::vector<Row>& batch,
                 const core::ScoringOptions& options, JsonlWriter& out) {
  std::vector<core::ScoredSequence> seqs;
  seqs.reserve(batch.size());
  for (const auto& r : batch) seqs.push_back({r.ids, {}});
  const auto scores = core::score_sequences(model, seqs, options);
  for (size_t b = 0; b < batch.size(); ++b) {
    json& row = batch[b].fields;
    row["input_ids"] = batch[b].ids;
    row["token_logprobs"] = scores[b].token_logprobs;
    out.write(row);
  }
  batch.clear();
}

int run_logprobs(const std::vector<std::string>& args) {
  po::options_description desc("options");
  desc.add_options()("model", po::value<std::string>()->required(),
                     "checkpoint folder (causal LM)")(
      "input", po::value<std::string>()->required(),
      "JSONL rows with input_ids (list of ints), text, or messages")(
      "device", po::value<std::string>()->default_value("cpu"), "cpu|cuda")(
      "dtype", po::value<std::string>()->default_value("float32"), "float32|bfloat16")(
      "batch-size", po::value<int64_t>()->default_value(8), "rows per forward pass")(
      "chat-template", po::value<std::string>(),
      "llama3|chatml for messages rows (default: from the tokenizer)")(
      "truncate", po::bool_switch(),
      "score the first max_position_embeddings tokens of longer rows (default: an error)");
  add_output_option(desc, "JSONL: the input fields plus input_ids and token_logprobs");
  po::variables_map vm;
  if (!parse_options("usage: posttrain logprobs --model DIR --input IN.jsonl --output OUT.jsonl "
                     "[options]\nWrites token_logprobs[i] = log p(input_ids[i+1] | "
                     "input_ids[0..i]) for every input row.",
                     desc, args, &vm)) {
    return 0;
  }
  const std::string out_path = require_output(vm, "logprobs");
  const std::string model_dir = vm["model"].as<std::string>();
  const std::string dev_name = vm["device"].as<std::string>();
  const std::string dtype_name = vm["dtype"].as<std::string>();
  const int64_t batch_size = vm["batch-size"].as<int64_t>();
  if (dev_name != "cpu" && dev_name != "cuda") throw UsageError("--device must be cpu or cuda");
  if (dev_name == "cuda" && !at::hasCUDA()) throw UsageError("--device cuda: no CUDA device");
  if (dtype_name != "float32" && dtype_name != "bfloat16") {
    throw UsageError("--dtype must be float32 or bfloat16");
  }
  if (batch_size <= 0) throw UsageError("--batch-size must be positive");
  std::optional<core::ChatFormat> format;
  if (vm.count("chat-template"))
    format = core::parse_chat_format(vm["chat-template"].as<std::string>());

  const auto config = core::load_config(model_dir);
  if (config.kind == core::ModelKind::kRewardModel) {
    throw UsageError(model_dir +
                     " is a reward model (LlamaForSequenceClassification); "
                     "logprobs needs a causal language model");
  }
  const at::Device device(dev_name == "cuda" ? at::kCUDA : at::kCPU);
  auto model =
      core::load_model(model_dir, device, dtype_name == "bfloat16" ? at::kBFloat16 : at::kFloat);
  model->eval();

  core::ScoringOptions scoring;
  scoring.device = device;
  scoring.batch_size = batch_size;
  JsonlReader reader(vm["input"].as<std::string>());
  JsonlWriter writer(out_path);
  RowTokens tokens(model_dir, format, config.vocab_size);
  Progress progress("logprobs", 0);
  std::vector<Row> batch;
  int64_t rows = 0;
  json row;
  while (reader.next(&row)) {
    Row r{row, core::fit_context(tokens.ids(row, reader), config.max_position_embeddings,
                                 vm["truncate"].as<bool>(), reader.where())};
    batch.push_back(std::move(r));
    if (static_cast<int64_t>(batch.size()) == batch_size)
      score_batch(*model, batch, scoring, writer);
    progress.update(++rows);
  }
  if (!batch.empty()) score_batch(*model, batch, scoring, writer);
  writer.close();
  progress.finish();
  std::cerr << "logprobs: scored " << rows << " rows from " << reader.path() << " into " << out_path
            << "\n";
  return 0;
}

}  // namespace

POSTTRAIN_COMMAND("logprobs", "per-token log-probs of JSONL rows under a causal LM", run_logprobs);

}  // namespace posttrain::app
