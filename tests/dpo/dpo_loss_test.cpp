// DPO's per-pair losses against values derived by hand (derivations beside each case).
#include <gtest/gtest.h>

#include <cmath>

#include <ATen/ATen.h>

#include "common/error.h"
#include "dpo/loss.h"

namespace posttrain::dpo {
namespace {

at::Tensor t(std::vector<double> v) { return at::tensor(v, at::kDouble); }

LossOptions opts(LossType type, double beta, double eps = 0) {
  LossOptions o;
  o.type = type;
  o.beta = beta;
  o.label_smoothing = eps;
  return o;
}

// pi_c = -10, pi_r = -12, ref_c = -11, ref_r = -11:
//   d = (pi_c - ref_c) - (pi_r - ref_r) = 1 - (-1) = 2.
TEST(DpoLoss, SigmoidMatchesHandDerivedValueAndGradient) {
  auto pc = t({-10}).requires_grad_(), pr = t({-12}).requires_grad_();
  auto out = pair_losses(pc, pr, t({-11}), t({-11}), opts(LossType::kSigmoid, 0.5));
  // beta d = 1: loss = -log sigmoid(1) = log(1 + e^-1) = 0.313261687518222...
  EXPECT_NEAR(out.losses.item<double>(), std::log1p(std::exp(-1.0)), 1e-12);
  EXPECT_NEAR(out.losses.item<double>(), 0.31326168751822286, 1e-12);
  // rewards: beta (pi - ref) = 0.5 * 1 = 0.5 and 0.5 * -1 = -0.5
  EXPECT_NEAR(out.chosen_rewards.item<double>(), 0.5, 1e-12);
  EXPECT_NEAR(out.rejected_rewards.item<double>(), -0.5, 1e-12);
  // d loss / d pi_c = -beta sigmoid(-beta d) = -0.5 / (1 + e) = -0.134470710...; d/d pi_r is
  // its negative.
  out.losses.sum().backward();
  EXPECT_NEAR(pc.grad().item<double>(), -0.5 / (1 + std::exp(1.0)), 1e-12);
  EXPECT_NEAR(pr.grad().item<double>(), 0.5 / (1 + std::exp(1.0)), 1e-12);
}

TEST(DpoLoss, ReferenceGetsNoGradient) {
  auto rc = t({-11}).requires_grad_(), rr = t({-11}).requires_grad_();
  auto out = pair_losses(t({-10}).requires_grad_(), t({-12}).requires_grad_(), rc, rr,
                         opts(LossType::kSigmoid, 0.1));
  out.losses.sum().backward();
  EXPECT_FALSE(rc.grad().defined());
  EXPECT_FALSE(rr.grad().defined());
}

// Label smoothing eps = 0.1 on the same pair (beta d = 1):
//   0.9 log(1 + e^-1) + 0.1 log(1 + e^1), and log(1 + e) = 1 + log(1 + e^-1), so
//   = log(1 + e^-1) + 0.1 = 0.413261687518222...
TEST(DpoLoss, LabelSmoothingMatchesHandDerivedValue) {
  auto out = pair_losses(t({-10}), t({-12}), t({-11}), t({-11}),
                         opts(LossType::kSigmoid, 0.5, 0.1));
  EXPECT_NEAR(out.losses.item<double>(), 0.41326168751822286, 1e-12);
}

// IPO with TRL's per-token means: chosen sums -6 over 3 tokens (mean -2), rejected -8 over 4
// (-2); reference chosen -9 / 3 = -3, rejected -4 / 4 = -1. d = (-2 + 3) - (-2 + 1) = 2.
//   beta = 0.5: (d - 1 / (2 beta))^2 = (2 - 1)^2 = 1; d loss / d (chosen SUM) =
//   2 (d - 1) / 3 = 2/3 (the mean divides by 3).
//   beta = 0.25: 1 / (2 beta) = 2, loss 0.
TEST(DpoLoss, IpoUsesPerTokenMeansAndMatchesHandDerivedValues) {
  auto sum_c = t({-6}).requires_grad_();
  const auto nc = at::tensor({3}, at::kLong), nr = at::tensor({4}, at::kLong);
  auto pc = loss_logps(sum_c, nc, LossType::kIpo);
  auto pr = loss_logps(t({-8}), nr, LossType::kIpo);
  auto rc = loss_logps(t({-9}), nc, LossType::kIpo);
  auto rr = loss_logps(t({-4}), nr, LossType::kIpo);
  auto out = pair_losses(pc, pr, rc, rr, opts(LossType::kIpo, 0.5));
  EXPECT_NEAR(out.losses.item<double>(), 1.0, 1e-12);
  out.losses.sum().backward();
  EXPECT_NEAR(sum_c.grad().item<double>(), 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(pair_losses(pc.detach(), pr, rc, rr, opts(LossType::kIpo, 0.25)).losses.item<double>(),
              0.0, 1e-12);
  // Other losses use the sums unchanged.
  EXPECT_EQ(loss_logps(t({-6}), nc, LossType::kSigmoid).item<double>(), -6.0);
}

// Hinge max(0, 1 - beta d): d = 2, beta = 0.5 -> 0; beta = 0.25 -> 0.5; the swapped pair
// (d = -2), beta = 0.5 -> 2, gradient d/d pi_c = -beta = -0.5.
TEST(DpoLoss, HingeMatchesHandDerivedValues) {
  EXPECT_NEAR(pair_losses(t({-10}), t({-12}), t({-11}), t({-11}), opts(LossType::kHinge, 0.5))
                  .losses.item<double>(),
              0.0, 1e-12);
  EXPECT_NEAR(pair_losses(t({-10}), t({-12}), t({-11}), t({-11}), opts(LossType::kHinge, 0.25))
                  .losses.item<double>(),
              0.5, 1e-12);
  auto pc = t({-12}).requires_grad_();
  auto out = pair_losses(pc, t({-10}), t({-11}), t({-11}), opts(LossType::kHinge, 0.5));
  EXPECT_NEAR(out.losses.item<double>(), 2.0, 1e-12);
  out.losses.sum().backward();
  EXPECT_NEAR(pc.grad().item<double>(), -0.5, 1e-12);
}

TEST(DpoLoss, BatchIsElementwise) {
  auto out = pair_losses(t({-10, -12}), t({-12, -10}), t({-11, -11}), t({-11, -11}),
                         opts(LossType::kSigmoid, 0.5));
  // d = +2 and -2: log(1 + e^-1) and log(1 + e^1).
  EXPECT_NEAR(out.losses[0].item<double>(), std::log1p(std::exp(-1.0)), 1e-12);
  EXPECT_NEAR(out.losses[1].item<double>(), std::log1p(std::exp(1.0)), 1e-12);
}

TEST(DpoLoss, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(parse_loss_type("ipo"), LossType::kIpo);
  EXPECT_STREQ(loss_type_name(parse_loss_type("hinge")), "hinge");
  EXPECT_THROW(parse_loss_type("robust"), UsageError);
}

}  // namespace
}  // namespace posttrain::dpo
