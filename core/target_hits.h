// target_logprobs (core/logprobs.h) that also says which targets are the head's top-1 prediction,
// from the same logits, so SFT's mean_token_accuracy (TRL's metric) costs an argmax per chunk
// and no second pass of the LM head.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "core/logprobs.h"

namespace posttrain::core {

// As target_logprobs; *hits (not null) receives [B, T] bool: whether targets[b, t] is the argmax
// of the head's logits there (the first maximum on a tie, as torch.argmax), false where ignored.
// hits carry no gradient.
at::Tensor target_logprobs_and_hits(LlamaModelImpl& model, const at::Tensor& hidden,
                                    const at::Tensor& targets, at::Tensor* hits,
                                    int64_t chunk_tokens = 1024,
                                    int64_t keep_logits_bytes = kDefaultKeepLogitsBytes);

}  // namespace posttrain::core
