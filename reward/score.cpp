// Scoring JSONL rows with a reward model (see score.h).
#include "reward/score.h"

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/jsonl.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/data/examples.h"
#include "core/tokenizer/chat_template.h"
#include "datastore/store.h"
#include "sft/sft_examples.h"

namespace fs = std::filesystem;

namespace posttrain::reward {

using nlohmann::json;

std::string scorer_key(const std::string& model_dir) {
  // realpath, not std::filesystem: libtorch.so carries its own copies of those (common/files.h).
  char* p = ::realpath(model_dir.c_str(), nullptr);
  if (p == nullptr) throw IoError("cannot resolve the model path " + model_dir);
  std::string out(p);
  std::free(p);
  return out;
}

namespace {

struct Row {
  json fields;
  Location where;
  std::vector<int64_t> ids;
  // Store key: the response scored (resolved before any write; 0 = new or none).
  int64_t response_id = 0;
  json prompt, completion;  // content to add when the response is new
  bool in_store = false;
  std::optional<double> reward;
};

// Finds an existing response with this content (no write).
std::optional<int64_t> find_response(datastore::Store& store, const json& prompt,
                                     const json& completion) {
  auto p = store.find_prompt(prompt);
  if (!p) return std::nullopt;
  const std::string want = datastore::canonical_json(completion);
  for (int64_t id : store.responses_of(*p)) {
    if (datastore::canonical_json(store.response_content(id)) == want) return id;
  }
  return std::nullopt;
}

class RowReader {
 public:
  // `tok` loads the tokenizer on first need (input_ids rows score without one).
  RowReader(const ScoreOptions& o, std::function<const core::Tokenizer&(const Location&)> tok,
            int64_t vocab, datastore::Store* store)
      : o_(o), tok_(std::move(tok)), vocab_(vocab), store_(store) {}

  Row read(const json& row, const JsonlReader& reader) {
    Row r;
    r.fields = row;
    r.where = reader.where();
    std::string field;
    if (row.contains("input_ids")) {
      field = "input_ids";
      r.ids = require_int_list(row, "input_ids", reader.where("input_ids"));
      for (size_t i = 0; i < r.ids.size(); ++i) {
        if (r.ids[i] < 0 || r.ids[i] >= vocab_) {
          throw InputError(reader.where("input_ids[" + std::to_string(i) + "]"),
                           "token id " + std::to_string(r.ids[i]) +
                               " outside the vocabulary [0, " + std::to_string(vocab_) + ")");
        }
      }
    } else if (row.contains("text")) {
      field = "text";
      const std::string text = require_string(row, "text", reader.where("text"));
      r.ids = tok_(reader.where()).encode(text, true);
    } else if (row.contains("messages")) {
      field = "messages";
      const auto messages = core::parse_messages(row["messages"], reader.where("messages"));
      if (messages.empty()) throw InputError(reader.where("messages"), "empty list");
      const auto& tok = tok_(reader.where());
      r.ids = core::render_chat(tok, messages, format(tok), false).ids;
    } else if (row.contains("prompt")) {
      field = "prompt";
      const char* key = row.contains("completion") ? "completion" : "response";
      if (!row.contains(key)) {
        throw InputError(reader.where("completion"), "missing (a prompt row needs a completion)");
      }
      r.prompt = row["prompt"];
      r.completion = row[key];
      check_content(r.prompt, reader.where("prompt"));
      check_content(r.completion, reader.where(key));
      r.ids = render_pair(r.prompt, r.completion, reader);
      if (store_) {
        r.in_store = true;
        if (auto id = find_response(*store_, r.prompt, r.completion)) r.response_id = *id;
      }
    } else if (row.contains("response_id")) {
      field = "response_id";
      if (!store_) {
        throw InputError(reader.where("response_id"), "needs --store to look the response up");
      }
      const int64_t id = require_int(row, "response_id", reader.where("response_id"));
      int64_t prompt_id = 0;
      try {
        prompt_id = store_->prompt_of(id);
      } catch (const InputError& e) {
        throw InputError(reader.where("response_id"), e.what());
      }
      r.response_id = id;
      r.in_store = true;
      r.ids = render_pair(store_->prompt_content(prompt_id), store_->response_content(id), reader);
    } else {
      throw InputError(reader.where(),
                       "a row needs 'input_ids', 'text', 'messages', 'prompt' + 'completion'"
                       " or 'response_id'");
    }
    if (r.ids.empty()) throw InputError(reader.where(field), "no tokens to score");
    return r;
  }

 private:
  core::ChatFormat format(const core::Tokenizer& tok) const {
    return o_.format.value_or(tok.chat_format());
  }

  static void check_content(const json& v, const Location& where) {
    datastore::validate_content(v, where);
  }

  std::vector<int64_t> render_pair(const json& prompt, const json& completion,
                                   const JsonlReader& reader) {
    const json pair = {{"prompt", prompt}, {"completion", completion}};
    const auto ex = sft::parse_sft_example(pair, reader.where(), o_.prompt_completion_as_text);
    const auto& tok = tok_(reader.where());
    return sft::tokenize_sft_example(tok, format(tok), ex).ids;
  }

  const ScoreOptions& o_;
  std::function<const core::Tokenizer&(const Location&)> tok_;
  int64_t vocab_;
  datastore::Store* store_;
};

// Rewards of rows [begin, end) (right-padded batch, attention mask).
void score_batch(core::LlamaModelImpl& model, std::vector<Row*>& batch, at::Device device,
                 int64_t pad) {
  int64_t T = 0;
  for (const auto* r : batch) T = std::max<int64_t>(T, static_cast<int64_t>(r->ids.size()));
  const auto B = static_cast<int64_t>(batch.size());
  auto ids = at::full({B, T}, pad, at::kLong), mask = at::zeros({B, T}, at::kLong);
  for (int64_t b = 0; b < B; ++b) {
    const auto n = static_cast<int64_t>(batch[b]->ids.size());
    ids[b].narrow(0, 0, n).copy_(at::tensor(batch[b]->ids, at::kLong));
    mask[b].narrow(0, 0, n).fill_(1);
  }
  core::ForwardInputs in;
  in.input_ids = ids.to(device);
  in.attention_mask = mask.to(device);
  const auto rewards = model.rewards(in).to(at::kCPU).to(at::kDouble).contiguous();
  const double* p = rewards.data_ptr<double>();
  for (int64_t b = 0; b < B; ++b) batch[b]->reward = p[b];
  batch.clear();
}

}  // namespace

ScoreSummary score_file(const std::string& input, const std::string& output,
                        const ScoreOptions& o) {
  const auto config = core::load_config(o.model_dir);
  if (config.kind != core::ModelKind::kRewardModel) {
    throw UsageError(o.model_dir + " is not a reward model (LlamaForSequenceClassification with "
                                   "num_labels 1); `reward score` needs one");
  }
  std::optional<datastore::Store> store;
  if (!o.store.empty()) {
    if (!fs::exists(o.store)) throw UsageError("--store " + o.store + ": no such store");
    store.emplace(datastore::Store::open(o.store));
  }
  // The tokenizer only when a row needs it (input_ids rows score without one).
  std::optional<core::Tokenizer> tok;
  auto tokenizer = [&](const Location& where) -> const core::Tokenizer& {
    if (!tok) {
      try {
        tok = core::Tokenizer::load_dir(o.model_dir);
      } catch (const Error& e) {
        throw UsageError(where.describe() + ": needs the model's tokenizer: " + e.what());
      }
    }
    return *tok;
  };
  // 1. Read and check every row.
  std::vector<Row> rows;
  {
    JsonlReader reader(input);
    RowReader rr(o, tokenizer, config.vocab_size, store ? &*store : nullptr);
    json row;
    while (reader.next(&row)) rows.push_back(rr.read(row, reader));
  }
  ScoreSummary sum;
  sum.rows = static_cast<int64_t>(rows.size());
  // 2. Reuse stored scores of this checkpoint.
  const std::string scorer = scorer_key(o.model_dir);
  if (store) {
    for (auto& r : rows) {
      if (!r.in_store || r.response_id == 0) continue;
      for (const auto& [name, value] : store->scores_of(r.response_id,
                                                        datastore::ScorerKind::kRewardModel)) {
        if (name == scorer) r.reward = value;  // the newest one wins
      }
      sum.reused += r.reward.has_value();
    }
  }
  // 3. Compute the rest.
  std::vector<Row*> todo;
  for (auto& r : rows)
    if (!r.reward) todo.push_back(&r);
  if (!todo.empty()) {
    auto model = core::load_model(o.model_dir, o.device, o.dtype);
    model->eval();
    c10::InferenceMode inference;
    const int64_t pad = config.pad_token_id.value_or(0);
    std::vector<Row*> batch;
    for (Row* r : todo) {
      batch.push_back(r);
      if (static_cast<int64_t>(batch.size()) == o.batch_size) score_batch(*model, batch, o.device, pad);
    }
    if (!batch.empty()) score_batch(*model, batch, o.device, pad);
    sum.computed = static_cast<int64_t>(todo.size());
  }
  // 4. Record new scores in one transaction, then write the output.
  if (store) {
    auto tx = store->transaction();
    for (auto& r : rows) {
      if (!r.in_store) continue;
      const bool had = r.response_id != 0;
      if (!had) {
        datastore::NewResponse nr;
        nr.prompt_id = store->add_prompt(r.prompt, "reward_score");
        nr.content = r.completion;
        r.response_id = store->add_response(nr);
      }
      bool known = false;
      for (const auto& [name, value] :
           store->scores_of(r.response_id, datastore::ScorerKind::kRewardModel)) {
        known = known || name == scorer;
      }
      if (!known) {
        datastore::NewScore s;
        s.response_id = r.response_id;
        s.kind = datastore::ScorerKind::kRewardModel;
        s.scorer = scorer;
        s.value = *r.reward;
        store->add_score(s);
        ++sum.stored;
      }
      r.fields["response_id"] = r.response_id;
    }
    tx.commit();
  }
  JsonlWriter writer(output);
  for (auto& r : rows) {
    r.fields["reward"] = *r.reward;
    writer.write(r.fields);
  }
  writer.close();
  return sum;
}

}  // namespace posttrain::reward
