#include "core/train/metrics.h"

#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/jsonl.h"

namespace posttrain::core {

MetricsWriter::MetricsWriter(const std::string& path, int64_t keep_through_step) : path_(path) {
  std::vector<std::string> kept;
  if (keep_through_step > 0 && std::filesystem::exists(path)) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      try {
        auto j = nlohmann::json::parse(line);
        if (j.value("step", int64_t{0}) <= keep_through_step) kept.push_back(line);
      } catch (const nlohmann::json::exception&) {
        // A torn last line from a killed run: dropped.
      }
    }
  }
  out_.open(path, std::ios::trunc);
  if (!out_) throw IoError("cannot write " + path);
  for (const auto& line : kept) out_ << line << "\n";
  out_.flush();
}

void MetricsWriter::write(const nlohmann::json& line) {
  out_ << line.dump() << "\n";
  out_.flush();
  if (!out_) throw IoError("write failed: " + path_);
}

bool is_event_line(const nlohmann::json& line) {
  return line.is_object() && line.contains("event");
}

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  JsonlReader reader(path);
  std::vector<nlohmann::json> out;
  nlohmann::json row;
  while (reader.next(&row)) out.push_back(row);
  return out;
}

nlohmann::json hf_log_history(const std::string& path, int64_t through_step) {
  nlohmann::json history = nlohmann::json::array();
  if (!std::filesystem::exists(path)) return history;
  for (const auto& line : read_metrics(path)) {
    if (!line.is_object() || line.value("step", int64_t{0}) > through_step) continue;
    if (!is_event_line(line)) {
      history.push_back(line);
    } else if (line["event"] == "done") {
      nlohmann::json last = nlohmann::json::object();
      for (const char* k : {"train_runtime", "train_samples_per_second", "train_steps_per_second",
                            "train_loss", "epoch", "step"}) {
        if (line.contains(k)) last[k] = line[k];
      }
      history.push_back(last);
    }
  }
  return history;
}

}  // namespace posttrain::core
