// Rewards of candidates under a reward model, as `posttrain reward score` computes them for a
// {"prompt", "completion"} row: the pair rendered as SFT renders it (the reward model's
// tokenizer and chat template), batched right-padded sequences (core::score_sequences), the
// reward read at each sequence's last token. Stored under the same scorer name (the model's
// absolute path), so `reward score --store` reuses these scores.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace posttrain::rejection_sampling {

class RewardScorer {
 public:
  // Loads the model (throws UsageError when `dir` is not a reward model). device: cpu|cuda,
  // dtype: float32|bfloat16.
  RewardScorer(const std::string& dir, const std::string& device, const std::string& dtype,
               int64_t batch_size);
  ~RewardScorer();
  // prompt: a string or messages (the row's "prompt"); one reward per completion.
  std::vector<double> score(const nlohmann::json& prompt,
                            const std::vector<std::string>& completions);
  const std::string& scorer() const;  // the absolute path

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// Absolute path with symlinks resolved (throws IoError when it does not exist).
std::string absolute_path(const std::string& path);

}  // namespace posttrain::rejection_sampling
