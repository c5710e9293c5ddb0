// Reward-model scoring of candidates (see reward_scorer.h).
#include "rejection_sampling/reward_scorer.h"

#include <ATen/ATen.h>

#include <cstdlib>

#include "common/error.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/scoring.h"
#include "core/tokenizer/tokenizer.h"
#include "sft/sft_examples.h"

namespace posttrain::rejection_sampling {

std::string absolute_path(const std::string& path) {
  // realpath, not std::filesystem: libtorch.so carries its own copies of those (common/files.h).
  char* p = ::realpath(path.c_str(), nullptr);
  if (p == nullptr) throw IoError("cannot resolve the path " + path);
  std::string out(p);
  std::free(p);
  return out;
}

struct RewardScorer::State {
  std::string scorer;
  core::LlamaModel model{nullptr};
  std::unique_ptr<core::Tokenizer> tok;
  core::ScoringOptions options;
};

RewardScorer::RewardScorer(const std::string& dir, const std::string& device,
                           const std::string& dtype, int64_t batch_size)
    : s_(std::make_unique<State>()) {
  const auto config = core::load_config(dir);
  if (config.kind != core::ModelKind::kRewardModel) {
    throw UsageError("reward_model.path " + dir +
                     " is not a reward model "
                     "(LlamaForSequenceClassification with num_labels 1)");
  }
  s_->scorer = absolute_path(dir);
  s_->options.device = at::Device(device == "cuda" ? at::kCUDA : at::kCPU);
  s_->options.batch_size = batch_size;
  s_->model =
      core::load_model(dir, s_->options.device, dtype == "bfloat16" ? at::kBFloat16 : at::kFloat);
  s_->model->eval();
  s_->tok = std::make_unique<core::Tokenizer>(core::Tokenizer::load_dir(dir));
}

RewardScorer::~RewardScorer() = default;

const std::string& RewardScorer::scorer() const { return s_->scorer; }

std::vector<double> RewardScorer::score(const nlohmann::json& prompt,
                                        const std::vector<std::string>& completions) {
  std::vector<core::ScoredSequence> seqs;
  for (const auto& c : completions) {
    const nlohmann::json row = {{"prompt", prompt}, {"completion", c}};
    const auto ex = sft::parse_sft_example(row, Location{"", 0, "candidate"}, false);
    seqs.push_back({sft::tokenize_sft_example(*s_->tok, s_->tok->chat_format(), ex).ids, {}});
  }
  std::vector<double> out;
  for (const auto& s : core::score_sequences(*s_->model, seqs, s_->options)) {
    out.push_back(s.reward);
  }
  return out;
}

}  // namespace posttrain::rejection_sampling
