// DPO's per-pair losses (see loss.h).
#include "dpo/loss.h"

#include <ATen/ATen.h>

#include "common/error.h"

namespace posttrain::dpo {

LossType parse_loss_type(const std::string& name) {
  if (name == "sigmoid") return LossType::kSigmoid;
  if (name == "ipo") return LossType::kIpo;
  if (name == "hinge") return LossType::kHinge;
  throw UsageError("unknown DPO loss type '" + name + "' (sigmoid, ipo, hinge)");
}

const char* loss_type_name(LossType type) {
  switch (type) {
    case LossType::kSigmoid: return "sigmoid";
    case LossType::kIpo: return "ipo";
    case LossType::kHinge: return "hinge";
  }
  return "?";
}

at::Tensor loss_logps(const at::Tensor& sums, const at::Tensor& counts, LossType type) {
  if (type != LossType::kIpo) return sums;
  return sums / counts.to(sums.scalar_type()).clamp_min(1);
}

PairLosses pair_losses(const at::Tensor& pc, const at::Tensor& pr, const at::Tensor& rc,
                       const at::Tensor& rr, const LossOptions& o) {
  if (!(o.beta > 0)) throw UsageError("dpo.beta must be > 0");
  const at::Tensor ref_c = rc.detach().to(pc.scalar_type()), ref_r = rr.detach().to(pc.scalar_type());
  const at::Tensor d = (pc - ref_c) - (pr - ref_r);  // [N]
  PairLosses out;
  switch (o.type) {
    case LossType::kSigmoid: {
      const double eps = o.label_smoothing;
      out.losses = -at::log_sigmoid(o.beta * d) * (1 - eps);
      if (eps > 0) out.losses = out.losses - at::log_sigmoid(-o.beta * d) * eps;
      break;
    }
    case LossType::kIpo:
      out.losses = (d - 1.0 / (2.0 * o.beta)).pow(2);
      break;
    case LossType::kHinge:
      out.losses = at::relu(1.0 - o.beta * d);
      break;
  }
  out.chosen_rewards = (o.beta * (pc - ref_c)).detach();
  out.rejected_rewards = (o.beta * (pr - ref_r)).detach();
  return out;
}

}  // namespace posttrain::dpo
