// OUT/metrics.jsonl: one JSON object per line, appended as training goes. Step lines carry
// step, loss, lr, grad_norm, tokens_per_s (and mfu on GPU) and the loss's metrics by name; eval
// lines carry step, eval_loss and eval_<metric>.
// On resume from step S the writer first drops lines of steps after S, so the file reads as if
// the run had never stopped.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

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

// Reads every line of a metrics file (for tests and tools).
std::vector<nlohmann::json> read_metrics(const std::string& path);

}  // namespace posttrain::core
