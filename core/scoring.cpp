// See scoring.h. Sequences: right-padded rows with an attention mask (a padded row computes what
// it would alone). Groups: shared-prefix documents packed into rows; one token_logprobs pass
// gives every prompt and response token (it zeroes only segment ends), one score-head pass
// every reward.
#include "core/scoring.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <dirent.h>
#include <fstream>

#include "common/error.h"
#include "common/sha256.h"
#include "core/data/shared_prefix.h"
#include "core/logprobs.h"

namespace posttrain::core {
namespace {

void check_options(const ScoringOptions& o) {
  if (o.batch_size <= 0) throw UsageError("scoring: batch_size must be positive");
  if (o.chunk_tokens <= 0) throw UsageError("scoring: chunk_tokens must be positive");
  if (o.max_row_tokens < 0) throw UsageError("scoring: max_row_tokens must be >= 0");
}

// The tensors of a batch moved to the model's device.
ForwardInputs on_device(ForwardInputs in, at::Device dev) {
  for (auto* t : {&in.input_ids, &in.position_ids, &in.document_ids, &in.attention_mask,
                  &in.segment_ids}) {
    if (t->defined()) *t = t->to(dev);
  }
  return in;
}

// Scores sequences [begin, end) into out.
void score_sequence_batch(LlamaModelImpl& model, const std::vector<ScoredSequence>& seqs,
                          size_t begin, size_t end, const ScoringOptions& o,
                          std::vector<SequenceScores>& out) {
  const int64_t B = static_cast<int64_t>(end - begin);
  int64_t T = 0;
  for (size_t i = begin; i < end; ++i) T = std::max<int64_t>(T, seqs[i].ids.size());
  auto ids = at::zeros({B, T}, at::kLong), mask = at::zeros({B, T}, at::kLong);  // [B, T]
  for (int64_t b = 0; b < B; ++b) {
    const auto& s = seqs[begin + b].ids;
    const int64_t n = static_cast<int64_t>(s.size());
    ids[b].narrow(0, 0, n).copy_(at::tensor(s, at::kLong));
    mask[b].narrow(0, 0, n).fill_(1);
  }
  ForwardInputs in;
  in.input_ids = ids;
  in.attention_mask = mask;
  in = on_device(in, o.device);
  if (model.is_reward_model()) {
    const auto r = model.rewards(in).to(at::kCPU).to(at::kDouble).contiguous();  // [B]
    for (int64_t b = 0; b < B; ++b) out[begin + b].reward = r[b].item<double>();
    return;
  }
  const auto lp = token_logprobs(model, in, o.chunk_tokens)
                      .to(at::kCPU)
                      .to(at::kDouble)
                      .contiguous();  // [B, T - 1]
  for (int64_t b = 0; b < B; ++b) {
    const auto& s = seqs[begin + b];
    const int64_t n = static_cast<int64_t>(s.ids.size());
    const double* p = lp.size(1) > 0 ? lp[b].data_ptr<double>() : nullptr;
    auto& r = out[begin + b];
    r.token_logprobs.assign(p, p + (n - 1));
    for (int64_t t = 1; t < n; ++t) {
      if (!s.target_mask.empty() && !s.target_mask[t]) continue;
      r.logprob_sum += p[t - 1];
      ++r.num_targets;
    }
  }
}

// Scores the documents of `rows` (indices into docs / groups) into out.
void score_group_batch(LlamaModelImpl& model, const std::vector<ScoredGroup>& groups,
                       const std::vector<SharedPrefixDocument>& docs,
                       const std::vector<std::vector<int64_t>>& rows, const ScoringOptions& o,
                       std::vector<GroupScores>& out) {
  const auto batch = collate_shared_prefix(docs, rows, /*pad_id=*/0);
  const auto in = on_device(batch.forward_inputs(), o.device);
  const int64_t T = batch.input_ids.size(1);
  if (model.is_reward_model()) {
    const auto r = model.token_rewards(in)
                       .reshape({-1})
                       .index_select(0, batch.segment_last.to(o.device))
                       .to(at::kCPU)
                       .to(at::kDouble)
                       .contiguous();  // [N]
    for (size_t n = 0; n < batch.segments.size(); ++n) {
      const auto& seg = batch.segments[n];
      out[seg.document].responses[seg.segment].reward = r[n].item<double>();
    }
    return;
  }
  // [B, T] with a zero column after the last: element t = log p(token t + 1 | ..).
  const auto lp = at::constant_pad_nd(token_logprobs(model, in, o.chunk_tokens), {0, 1})
                      .to(at::kCPU)
                      .to(at::kDouble)
                      .contiguous();
  // The prefix of each document starts where its first segment's begin minus (P - 1).
  for (const auto& seg : batch.segments) {
    const auto& g = groups[seg.document];
    const double* row = lp.data_ptr<double>() + seg.row * T;
    const int64_t P = static_cast<int64_t>(g.prompt.size());
    auto& scores = out[seg.document];
    if (seg.segment == 0) {
      const int64_t base = seg.span.begin - (P - 1);
      scores.prompt_logprobs.assign(row + base, row + base + (P - 1));
    }
    const auto& resp = g.responses[seg.segment];
    const int64_t n = static_cast<int64_t>(resp.size());
    auto& r = scores.responses[seg.segment];
    r.token_logprobs.assign(row + seg.span.begin, row + seg.span.begin + n);
    for (int64_t i = 0; i < n; ++i) {
      if (!g.response_masks.empty() && !g.response_masks[seg.segment][i]) continue;
      r.logprob_sum += r.token_logprobs[i];
      ++r.num_targets;
    }
  }
}

}  // namespace

std::vector<SequenceScores> score_sequences(LlamaModelImpl& model,
                                            const std::vector<ScoredSequence>& sequences,
                                            const ScoringOptions& options) {
  check_options(options);
  for (size_t i = 0; i < sequences.size(); ++i) {
    const auto& s = sequences[i];
    if (s.ids.empty()) throw UsageError("scoring: sequence " + std::to_string(i) + " is empty");
    if (!s.target_mask.empty() && s.target_mask.size() != s.ids.size()) {
      throw UsageError("scoring: sequence " + std::to_string(i) + " has " +
                       std::to_string(s.ids.size()) + " tokens but a target mask of " +
                       std::to_string(s.target_mask.size()));
    }
  }
  c10::InferenceMode inference;
  std::vector<SequenceScores> out(sequences.size());
  for (size_t b = 0; b < sequences.size(); b += options.batch_size) {
    const size_t e = std::min(sequences.size(), b + static_cast<size_t>(options.batch_size));
    score_sequence_batch(model, sequences, b, e, options, out);
    if (options.progress) options.progress(static_cast<int64_t>(e));
  }
  return out;
}

std::vector<GroupScores> score_groups(LlamaModelImpl& model, const std::vector<ScoredGroup>& groups,
                                      const ScoringOptions& options) {
  check_options(options);
  // Every response token is a target of the layout (log-probs of all of them come back); the
  // masks only choose what the sums count.
  std::vector<SharedPrefixDocument> docs;
  std::vector<GroupScores> out(groups.size());
  for (size_t i = 0; i < groups.size(); ++i) {
    const auto& g = groups[i];
    if (!g.response_masks.empty() && g.response_masks.size() != g.responses.size()) {
      throw UsageError("scoring: group " + std::to_string(i) + " has " +
                       std::to_string(g.responses.size()) + " responses but " +
                       std::to_string(g.response_masks.size()) + " target masks");
    }
    try {
      docs.push_back(shared_prefix_document(g.prompt, g.responses, g.response_masks));
    } catch (const UsageError& e) {
      throw UsageError("scoring: group " + std::to_string(i) + ": " + e.what());
    }
    out[i].responses.resize(g.responses.size());
  }
  std::vector<int64_t> order(groups.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  std::vector<std::vector<int64_t>> rows;
  if (options.max_row_tokens > 0) {
    rows = pack_shared_prefix(docs, order, options.max_row_tokens);
  } else {
    for (int64_t i : order) rows.push_back({i});
  }
  c10::InferenceMode inference;
  int64_t done = 0;
  for (size_t r = 0; r < rows.size(); r += options.batch_size) {
    const size_t e = std::min(rows.size(), r + static_cast<size_t>(options.batch_size));
    const std::vector<std::vector<int64_t>> batch_rows(rows.begin() + r, rows.begin() + e);
    score_group_batch(model, groups, docs, batch_rows, options, out);
    for (const auto& row : batch_rows) done += static_cast<int64_t>(row.size());
    if (options.progress) options.progress(done);
  }
  return out;
}

std::string reference_settings_hash(const ReferenceSettings& s) {
  std::map<std::string, std::string> fields = {
      {"checkpoint", s.checkpoint}, {"tokenizer", s.tokenizer}, {"chat_template", s.chat_template},
      {"truncation", s.truncation}, {"masks", s.masks},         {"dtype", s.dtype},
      {"layout", s.layout}};
  for (const auto& [k, v] : s.extra) {
    if (fields.count(k)) throw UsageError("reference settings: extra field '" + k + "' is a named one");
    fields["extra." + k] = v;
  }
  // Length-prefixed so no two different settings serialise alike.
  std::string text;
  for (const auto& [k, v] : fields) {
    text += std::to_string(k.size()) + ":" + k + "=" + std::to_string(v.size()) + ":" + v + "\n";
  }
  return sha256_hex(text);
}

std::string checkpoint_fingerprint(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (const dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      auto ends_with = [&](const std::string& suffix) {
        return name.size() >= suffix.size() &&
               name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
      };
      if (name == "config.json" || ends_with(".safetensors") ||
          ends_with(".safetensors.index.json")) {
        names.push_back(name);
      }
    }
    closedir(d);
  }
  if (std::find(names.begin(), names.end(), "config.json") == names.end()) {
    throw IoError(dir + "/config.json: not found (not a checkpoint folder)");
  }
  std::sort(names.begin(), names.end());
  // Each file hashed in 64 MiB pieces; the fingerprint hashes the names, sizes and piece
  // digests (the one-shot SHA-256 never holds a whole weight file in memory).
  constexpr size_t kPiece = size_t{64} << 20;
  std::string digests;
  std::string buf(kPiece, '\0');
  for (const auto& name : names) {
    const std::string path = dir + "/" + name;
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IoError(path + ": cannot open");
    int64_t size = 0;
    digests += name + "\n";
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(kPiece));
      const auto got = static_cast<size_t>(in.gcount());
      if (got == 0) break;
      size += static_cast<int64_t>(got);
      digests += sha256_hex(buf.substr(0, got)) + "\n";
    }
    if (in.bad()) throw IoError(path + ": read failed");
    digests += std::to_string(size) + "\n";
  }
  return sha256_hex(digests);
}

}  // namespace posttrain::core
