// `posttrain dpo eval` (see dpo_eval.h).
#include "dpo/dpo_eval.h"

#include <filesystem>
#include <optional>

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include "common/error.h"
#include "common/jsonl.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/tokenizer/tokenizer.h"
#include "dpo/pair_data.h"
#include "dpo/reference.h"

namespace fs = std::filesystem;

namespace posttrain::dpo {
namespace {

std::vector<RefValues> score_with(const std::string& dir, const std::vector<TokenizedPair>& pairs,
                                  const DpoEvalOptions& o) {
  const at::Device device(o.device == "cuda" ? at::kCUDA : at::kCPU);
  auto model = core::load_model(dir, device, o.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat);
  model->eval();
  std::vector<const TokenizedPair*> ptrs;
  for (const auto& p : pairs) ptrs.push_back(&p);
  return score_pairs(*model, ptrs, o.batch_size, 4096);
}

}  // namespace

nlohmann::json DpoEvalSummary::to_json() const {
  return {{"pairs", pairs}, {"loss", loss}, {"accuracy", accuracy}, {"margin", margin}};
}

DpoEvalSummary run_dpo_eval(const DpoEvalOptions& o) {
  if (o.device != "cpu" && o.device != "cuda") throw UsageError("--device must be cpu or cuda");
  if (o.device == "cuda" && !at::hasCUDA()) throw UsageError("--device cuda: no CUDA device");
  if (o.dtype != "float32" && o.dtype != "bfloat16") {
    throw UsageError("--dtype must be float32 or bfloat16");
  }
  if (o.batch_size <= 0) throw UsageError("--batch-size must be positive");
  const core::LlamaConfig config = core::load_config(o.policy);
  if (config.kind != core::ModelKind::kCausalLM) {
    throw UsageError(o.policy + " is a reward model; dpo eval needs a causal LM");
  }
  // A folder without a tokenizer can still score pre-tokenized rows.
  std::optional<core::Tokenizer> tok;
  if (fs::exists(fs::path(o.policy) / "tokenizer.json")) {
    tok = core::Tokenizer::load_dir(o.policy);
    if (o.chat_format != "auto") tok->set_chat_format(core::parse_chat_format(o.chat_format));
  }
  check_reference(o.reference, config, tok ? tok->fingerprint() : "");
  PairTokenization how;
  how.tok = tok ? &*tok : nullptr;
  how.format = tok ? tok->chat_format() : core::ChatFormat::kLlama3;
  how.masks.mask_format_tokens = o.mask_format_tokens;
  how.strings_as_text = o.strings_as_text;
  how.vocab_size = config.vocab_size;

  // Every pair with the input row it came from (a ranking row gives several).
  std::vector<TokenizedPair> pairs;
  std::vector<nlohmann::json> fields;
  {
    JsonlReader reader(o.input);
    nlohmann::json row;
    while (reader.next(&row)) {
      const size_t before = pairs.size();
      parse_pair_row(row, reader.where(), how, &pairs);
      for (size_t k = before; k < pairs.size(); ++k) {
        nlohmann::json f = row;
        if (pairs.size() - before > 1) f["pair"] = k - before;
        fields.push_back(std::move(f));
      }
    }
  }
  if (pairs.empty()) throw InputError(Location{o.input, 0, ""}, "no pairs");
  const auto policy = score_with(o.policy, pairs, o);
  const auto reference = score_with(o.reference, pairs, o);

  const int64_t n = static_cast<int64_t>(pairs.size());
  auto column = [n](auto get) {
    std::vector<double> v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = get(i);
    return at::tensor(v, at::kDouble);
  };
  const auto counts_c = column([&](int64_t i) { return double(pairs[i].chosen_count()); });
  const auto counts_r = column([&](int64_t i) { return double(pairs[i].rejected_count()); });
  const LossType type = o.loss.type;
  const PairLosses pl = pair_losses(
      loss_logps(column([&](int64_t i) { return policy[i].chosen; }), counts_c, type),
      loss_logps(column([&](int64_t i) { return policy[i].rejected; }), counts_r, type),
      loss_logps(column([&](int64_t i) { return reference[i].chosen; }), counts_c, type),
      loss_logps(column([&](int64_t i) { return reference[i].rejected; }), counts_r, type),
      o.loss);

  const std::string tmp = o.output + ".tmp";
  DpoEvalSummary s;
  s.pairs = n;
  {
    JsonlWriter out(tmp);
    for (int64_t i = 0; i < n; ++i) {
      nlohmann::json& row = fields[i];
      const double rc = pl.chosen_rewards[i].item<double>();
      const double rr = pl.rejected_rewards[i].item<double>();
      const double loss = pl.losses[i].item<double>();
      row["chosen_logps"] = policy[i].chosen;
      row["rejected_logps"] = policy[i].rejected;
      row["ref_chosen_logps"] = reference[i].chosen;
      row["ref_rejected_logps"] = reference[i].rejected;
      row["chosen_reward"] = rc;
      row["rejected_reward"] = rr;
      row["loss"] = loss;
      out.write(row);
      s.loss += loss;
      s.accuracy += rc > rr ? 1.0 : 0.0;
      s.margin += rc - rr;
    }
    out.close();
  }
  fs::rename(tmp, o.output);
  s.loss /= n;
  s.accuracy /= n;
  s.margin /= n;
  return s;
}

}  // namespace posttrain::dpo
