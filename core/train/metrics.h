// OUT/metrics.jsonl: one JSON object per line, appended as training goes, under the names
// Hugging Face's Trainer and TRL log (so their plotting habits carry over):
// - step lines: step, loss, learning_rate, grad_norm, epoch (fractional: rows consumed over the
//   epoch's rows), num_tokens (real tokens trained on so far, all ranks), tokens_per_s (and mfu on
//   GPU) and the loss's metrics by name (SFT: mean_token_accuracy; DPO: rewards/chosen, ...);
// - eval lines: step, epoch, eval_loss and eval_<metric>;
// - event lines, which carry "event" (a reader of training steps skips them): {"event": "data",
//   "step": S, ...} first, the stage's data summary as the run (or a resumed run, S > 0) starts;
//   {"event": "done", "step": total, ...} last, the final line the stage prints too (last loss
//   and metrics, HF's train_runtime, train_samples_per_second, train_steps_per_second,
//   train_loss (mean step loss of this process's steps), epoch, num_tokens).
// On resume from step S the writer first drops lines of steps after S, so the training lines read
// as if the run had never stopped.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace posttrain::core {

class MetricsWriter {
 public:
  // Opens `path` for appending after keeping only lines whose "step" is <= keep_through_step
  // (all lines are dropped when keep_through_step is 0).
  MetricsWriter(const std::string& path, int64_t keep_through_step);
  void write(const nlohmann::json& line);  // one line, flushed
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

// Whether a metrics line is an event line (data summary, final line) rather than a step or eval
// line.
bool is_event_line(const nlohmann::json& line);

// Reads every line of a metrics file (for tests and tools).
std::vector<nlohmann::json> read_metrics(const std::string& path);

// Hugging Face's trainer_state.json log_history from a metrics file: its step and eval lines of
// steps <= through_step as they are, and a "done" line as HF's last entry (train_runtime,
// train_samples_per_second, train_steps_per_second, train_loss, epoch, step). [] when the file
// does not exist.
nlohmann::json hf_log_history(const std::string& path, int64_t through_step);

}  // namespace posttrain::core
