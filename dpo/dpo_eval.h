// `posttrain dpo eval`: a policy and a reference scored on held-out pairs, per pair the four
// log-prob sums, the implicit rewards beta * (log pi - log ref) and the loss, then a summary
// (mean loss, accuracy = share of pairs whose chosen reward beats the rejected one, mean margin).
// Scoring goes through the training code (dpo/reference.h's score_pairs), so the values are the
// ones DPO trains on. The whole input is read and checked before anything is written, and the
// output appears under its name only when complete.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "dpo/loss.h"

namespace posttrain::dpo {

struct DpoEvalOptions {
  std::string policy, reference, input, output;
  LossOptions loss;
  std::string device = "cpu";      // cpu|cuda
  std::string dtype = "float32";   // float32|bfloat16
  int64_t batch_size = 8;          // pairs per forward
  bool mask_format_tokens = true;
  std::string chat_format = "auto";
  bool strings_as_text = false;
};

struct DpoEvalSummary {
  int64_t pairs = 0;
  double loss = 0, accuracy = 0, margin = 0;  // means over pairs
  nlohmann::json to_json() const;
};

DpoEvalSummary run_dpo_eval(const DpoEvalOptions& options);

}  // namespace posttrain::dpo
