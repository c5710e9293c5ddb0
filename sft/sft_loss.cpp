// The SFT loss (see sft.h).
#include <ATen/ATen.h>

#include "core/logprobs.h"
#include "sft/sft.h"

namespace posttrain::sft {

at::Tensor sft_loss_sum(core::LlamaModelImpl& model, const core::MicroBatch& batch,
                        int64_t logprob_chunk, int64_t keep_logits_bytes) {
  core::ForwardInputs in;
  in.input_ids = batch.require("input_ids");
  in.position_ids = batch.get("position_ids");
  in.document_ids = batch.get("document_ids");
  in.attention_mask = batch.get("attention_mask");
  at::Tensor hidden = model.hidden_states(in);  // [B, T, H]
  at::Tensor logp = core::target_logprobs(model, hidden, batch.require("targets"), logprob_chunk,
                                          keep_logits_bytes);
  return -logp.sum();  // [B, T] float32 with 0 at ignored positions -> scalar
}

}  // namespace posttrain::sft
