// How much memory a model needs, checked before it is allocated: a config whose parameters
// cannot fit (num_hidden_layers 1e9, a vocabulary of 1e12) is refused with both numbers instead
// of growing the process until the machine runs out.
#pragma once

#include <cstdint>
#include <string>

#include "core/model/llama_config.h"

namespace posttrain::core {

// Parameters of the model `config` describes (embeddings, every layer's attention, MLP and
// norms, final norm, lm_head unless tied, or the score head); INT64_MAX when larger.
int64_t parameter_count(const LlamaConfig& config);

// Refuses (UsageError naming both numbers) a model whose parameters take more than
// `available_bytes` at `bytes_per_parameter`. `what` names the model in the message.
void check_model_fits(const LlamaConfig& config, int64_t bytes_per_parameter,
                      int64_t available_bytes, const std::string& what);

// Memory this process can still allocate on the host: MemAvailable of /proc/meminfo (physical
// memory when that cannot be read), capped by RLIMIT_AS.
int64_t available_host_memory_bytes();

}  // namespace posttrain::core
