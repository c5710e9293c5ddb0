// Pair scoring and the run's reference log-probs (see reference.h).
#include "dpo/reference.h"

#include <filesystem>

#include <ATen/ATen.h>

#include "common/error.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/distributed/data_parallel.h"
#include "core/tokenizer/tokenizer.h"
#include "core/scoring.h"

namespace fs = std::filesystem;

namespace posttrain::dpo {

std::vector<RefValues> score_pairs(core::LlamaModelImpl& model,
                                   const std::vector<const TokenizedPair*>& pairs,
                                   int64_t batch_size, int64_t chunk, int64_t* forwards) {
  std::vector<core::ScoredGroup> groups;
  groups.reserve(pairs.size());
  for (const TokenizedPair* p : pairs) {
    groups.push_back({p->prompt, {p->chosen, p->rejected}, {p->chosen_mask, p->rejected_mask}});
  }
  core::ScoringOptions o;
  o.device = model.lm_head_weight().device();
  o.batch_size = batch_size;
  o.chunk_tokens = chunk;
  int64_t passes = 0;
  o.progress = [&passes](int64_t) { ++passes; };
  const auto scores = core::score_groups(model, groups, o);
  if (forwards) *forwards += passes;
  std::vector<RefValues> out;
  out.reserve(pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto& c = scores[i].responses[0];
    const auto& r = scores[i].responses[1];
    out.push_back({c.logprob_sum, r.logprob_sum, c.num_targets, r.num_targets});
  }
  return out;
}

void check_reference(const std::string& dir, const core::LlamaConfig& policy,
                     const std::string& policy_tok) {
  const core::LlamaConfig ref = core::load_config(dir);
  if (ref.kind != core::ModelKind::kCausalLM) {
    throw UsageError("reference " + dir + " is a reward model; DPO needs a causal LM");
  }
  auto differs = [&](const char* what, int64_t a, int64_t b) {
    if (a != b) {
      throw UsageError("reference " + dir + " has another architecture than the policy: " +
                       what + " " + std::to_string(b) + " vs " + std::to_string(a));
    }
  };
  differs("vocab_size", policy.vocab_size, ref.vocab_size);
  differs("hidden_size", policy.hidden_size, ref.hidden_size);
  differs("intermediate_size", policy.intermediate_size, ref.intermediate_size);
  differs("num_hidden_layers", policy.num_hidden_layers, ref.num_hidden_layers);
  differs("num_attention_heads", policy.num_attention_heads, ref.num_attention_heads);
  differs("num_key_value_heads", policy.num_key_value_heads, ref.num_key_value_heads);
  if (fs::exists(fs::path(dir) / "tokenizer.json") && !policy_tok.empty()) {
    const std::string ref_tok = core::Tokenizer::load_dir(dir).fingerprint();
    if (ref_tok != policy_tok) {
      throw UsageError("reference " + dir + " has another tokenizer than the policy "
                       "(tokenizer.json differs); its log-probs would score other tokens");
    }
  }
}

std::vector<RefValues> reference_logprobs(const std::vector<const TokenizedPair*>& pairs,
                                          RefCache& cache, const std::string& reference_dir,
                                          at::Device device, int64_t batch_size, int64_t chunk,
                                          const std::shared_ptr<core::DataParallel>& dp,
                                          ReferenceStats* stats) {
  std::vector<RefValues> out(pairs.size());
  std::vector<size_t> missing;
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (auto v = cache.get(*pairs[i])) {
      out[i] = *v;
    } else {
      missing.push_back(i);
    }
  }
  stats->pairs += static_cast<int64_t>(pairs.size());
  stats->cached += static_cast<int64_t>(pairs.size() - missing.size());
  stats->computed += static_cast<int64_t>(missing.size());
  if (missing.empty()) return out;
  const int rank = dp ? dp->rank() : 0, world = dp ? dp->world_size() : 1;
  // Rank r scores missing pairs r, r + W, ...; a sum over ranks then gives every value.
  std::vector<const TokenizedPair*> mine;
  for (size_t j = rank; j < missing.size(); j += world) mine.push_back(pairs[missing[j]]);
  std::vector<RefValues> scored;
  {
    core::LlamaModel ref = core::load_model(reference_dir, device, at::kFloat);
    ref->eval();
    scored = score_pairs(*ref, mine, batch_size, chunk, &stats->forwards);
  }  // the reference leaves memory here
  at::Tensor values = at::zeros({static_cast<int64_t>(missing.size()), 2}, at::kDouble);
  for (size_t k = 0; k < mine.size(); ++k) {
    values[rank + k * world][0] = scored[k].chosen;
    values[rank + k * world][1] = scored[k].rejected;
  }
  if (dp && dp->distributed()) {
    at::Tensor on_device = values.to(dp->device());
    dp->all_reduce_sum_({on_device});
    values = on_device.to(at::kCPU);
  }
  auto v = values.accessor<double, 2>();
  std::vector<const TokenizedPair*> done;
  std::vector<RefValues> done_values;
  for (size_t j = 0; j < missing.size(); ++j) {
    const TokenizedPair& p = *pairs[missing[j]];
    out[missing[j]] = {v[j][0], v[j][1], p.chosen_count(), p.rejected_count()};
    done.push_back(&p);
    done_values.push_back(out[missing[j]]);
  }
  if (rank == 0) cache.put(done, done_values);
  if (dp && dp->distributed()) dp->barrier();
  return out;
}

}  // namespace posttrain::dpo
