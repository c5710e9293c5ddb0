// The trainer's bookkeeping of LossOutputs (core/train/batch.h): the step's denominators, the
// scaled loss each micro-batch back-propagates, and running sums of the loss parts and metrics
// that are added across micro-batches, packed into one vector to sum across ranks, and divided
// into the logged loss and metrics.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/train/batch.h"

namespace posttrain::core {

// N (Σ num_terms) and C_k (Σ counts[k]) over a step's micro-batches (then over ranks).
struct LossNorms {
  double terms = 0;
  std::map<std::string, double> counts;

  void add(const MicroBatch& mb);
  // Flat [terms, counts in key order] for a cross-rank sum, and back.
  std::vector<double> pack() const;
  void unpack(const std::vector<double>& flat);
  // C_k; throws Error naming `what` (e.g. "extra_sums 'x'") when k is absent or its total is 0.
  double count(const std::string& k, const std::string& what) const;
};

// The loss a micro-batch back-propagates: sum / N + Σ_k extra_sums[k] / C_k (float32 scalar).
at::Tensor scaled_loss(const LossOutput& out, const LossNorms& norms);

// Detached float64 sums of LossOutputs: the main sum, each extra sum, each metric.
class LossSums {
 public:
  // Adds `out` (times `weight`, 0 to learn the names only). Throws Error when its names differ
  // from those of the first output added.
  void add(const LossOutput& out, double weight = 1.0);
  bool empty() const { return !main_.defined(); }
  // The main sum alone (this rank's, before any cross-rank sum).
  double main_sum() const;
  // Names of the extra sums and metrics in pack() order, as one string (for a rank check).
  std::string signature() const;
  // [main, extras in key order, metrics in key order], and back after a cross-rank sum.
  std::vector<double> pack() const;
  void unpack(const std::vector<double>& flat);
  // loss = main / N + Σ extra_k / C_k.
  double loss(const LossNorms& norms) const;
  // metric = sum / N, or / C_k under metric_norms.
  std::map<std::string, double> metrics(const LossNorms& norms) const;

 private:
  at::Tensor main_;
  std::map<std::string, at::Tensor> extra_, metrics_;
  std::map<std::string, std::string> metric_norms_;
  std::vector<double> reduced_;  // set by unpack(); pack() order
};

// Metric names the trainer writes itself, which a loss may not use.
bool is_reserved_metric(const std::string& name);

}  // namespace posttrain::core
