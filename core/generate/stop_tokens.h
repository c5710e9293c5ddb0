// The token ids that end a generation for a checkpoint folder: generation_config.json's
// eos_token_id (one id or a list: Llama 3 Instruct lists <|end_of_text|>, <|eom_id|> and
// <|eot_id|>), else config.json's. Transformers' generate stops on the same ids.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model/llama_config.h"

namespace posttrain::core::generate {

// InputError naming generation_config.json and the field when it is malformed or an id lies
// outside the vocabulary.
std::vector<int64_t> model_stop_token_ids(const std::string& model_dir, const LlamaConfig& config);

}  // namespace posttrain::core::generate
