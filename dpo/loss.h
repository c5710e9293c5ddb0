// DPO's per-pair losses as pure functions of per-pair log-probs, with TRL's conventions
// (trl.DPOTrainer.dpo_loss). With d = (pi_c - ref_c) - (pi_r - ref_r):
//   sigmoid (DPO):  -(1 - eps) log sigmoid(beta d) - eps log sigmoid(-beta d)
//                   (eps = label_smoothing: conservative DPO; eps = 0 is plain DPO)
//   ipo:            (d - 1 / (2 beta))^2, where pi and ref are per-token MEANS of the
//                   completion's log-probs (TRL's choice; the IPO paper writes sums)
//   hinge (SLiC):   max(0, 1 - beta d)
// Rewards (what TRL logs): beta * (pi - ref) of each side, detached.
#pragma once

#include <string>

#include <ATen/core/Tensor.h>

namespace posttrain::dpo {

enum class LossType { kSigmoid, kIpo, kHinge };
// "sigmoid" / "ipo" / "hinge"; throws UsageError on anything else.
LossType parse_loss_type(const std::string& name);
const char* loss_type_name(LossType type);

struct LossOptions {
  LossType type = LossType::kSigmoid;
  double beta = 0.1;             // > 0
  double label_smoothing = 0.0;  // in [0, 0.5); sigmoid only
};

// Per-pair log-probs in the form the loss wants: the sums as they are, or for ipo the sums
// divided by their token counts (a pair side with no counted token has mean 0).
// sums, counts: [N] (counts any numeric dtype).
at::Tensor loss_logps(const at::Tensor& sums, const at::Tensor& counts, LossType type);

struct PairLosses {
  at::Tensor losses;            // [N] float, under autograd through the policy log-probs
  at::Tensor chosen_rewards;    // [N] beta * (pi_c - ref_c), detached
  at::Tensor rejected_rewards;  // [N] beta * (pi_r - ref_r), detached
};

// policy_* and ref_*: [N] log-probs of each pair's chosen and rejected completion (already in
// loss_logps form). The reference values carry no gradient.
PairLosses pair_losses(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected,
                       const at::Tensor& ref_chosen, const at::Tensor& ref_rejected,
                       const LossOptions& options);

}  // namespace posttrain::dpo
