// The reward model's pairwise loss, margin and centering terms against values derived by hand.
#include "reward/loss.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace posttrain::reward {
namespace {

// One example, rewards r = (1.0, 0.5, -0.5) for edited > chosen > rejected, so its three ordered
// pairs (0,1), (0,2), (1,2) have differences d = 0.5, 1.5, 1.0; a second slot of pairs padded.
PairTensors ranking_pairs(std::vector<float> margins) {
  PairTensors p;
  p.better = torch::tensor({0, 0, 1, 0}, torch::kLong).view({1, 4});
  p.worse = torch::tensor({1, 2, 2, 0}, torch::kLong).view({1, 4});
  margins.push_back(5.0f);  // the padding slot's margin must not matter
  p.margin = torch::tensor(margins).view({1, 4});
  p.mask = torch::tensor({1.0f, 1.0f, 1.0f, 0.0f}).view({1, 4});
  return p;
}

torch::Tensor ranking_rewards() {
  return torch::tensor({1.0f, 0.5f, -0.5f}).view({1, 3}).set_requires_grad(true);
}

TEST(RewardLoss, BradleyTerryValueAndGradient) {
  auto r = ranking_rewards();
  auto s = pairwise_loss_sums(r, ranking_pairs({0, 0, 0}), {});
  // -log sigmoid(d) = log(1 + e^-d):
  //   d = 0.5: log(1 + 0.60653066) = 0.47407698
  //   d = 1.5: log(1 + 0.22313016) = 0.20141328
  //   d = 1.0: log(1 + 0.36787944) = 0.31326169      sum = 0.98875195
  EXPECT_NEAR(s.loss.item<double>(), 0.98875195, 1e-6);
  s.loss.backward();
  // d/dr_better = -sigmoid(-d), d/dr_worse = +sigmoid(-d); sigmoid(-0.5) = 0.37754067,
  // sigmoid(-1.5) = 0.18242552, sigmoid(-1.0) = 0.26894142:
  //   r0 (better twice): -(0.37754067 + 0.18242552) = -0.55996619
  //   r1 (worse, then better): 0.37754067 - 0.26894142 = 0.10859925
  //   r2 (worse twice): 0.18242552 + 0.26894142 = 0.45136694
  auto g = r.grad().view({3});
  EXPECT_NEAR(g[0].item<double>(), -0.55996619, 1e-6);
  EXPECT_NEAR(g[1].item<double>(), 0.10859925, 1e-6);
  EXPECT_NEAR(g[2].item<double>(), 0.45136694, 1e-6);
  // Metrics: every pair ranked right; margins 0.5 + 1.5 + 1.0 = 3; better rewards
  // 1 + 1 + 0.5 = 2.5; worse rewards 0.5 - 0.5 - 0.5 = -0.5.
  EXPECT_FLOAT_EQ(s.correct.item<float>(), 3.0f);
  EXPECT_FLOAT_EQ(s.margin.item<float>(), 3.0f);
  EXPECT_FLOAT_EQ(s.chosen.item<float>(), 2.5f);
  EXPECT_FLOAT_EQ(s.rejected.item<float>(), -0.5f);
}

TEST(RewardLoss, StrengthMarginShiftsEachTerm) {
  auto r = ranking_rewards();
  PairwiseLossOptions o;
  o.use_margin = true;
  // Margins 1 (significantly_better), 2/3 (better), 0: the logits become
  //   0.5 - 1 = -0.5: log(1 + e^0.5) = 0.97407698
  //   1.5 - 2/3 = 5/6: log(1 + e^(-5/6)) = log(1.43459821) = 0.36088482
  //   1.0 - 0 = 1.0: 0.31326169                           sum = 1.64822349
  auto s = pairwise_loss_sums(r, ranking_pairs({1.0f, 2.0f / 3.0f, 0.0f}), o);
  EXPECT_NEAR(s.loss.item<double>(), 1.64822349, 1e-6);
  // Off by default: the same margins change nothing.
  auto plain = pairwise_loss_sums(r, ranking_pairs({1.0f, 2.0f / 3.0f, 0.0f}), {});
  EXPECT_NEAR(plain.loss.item<double>(), 0.98875195, 1e-6);
  // The margin moves the loss, not the metrics (mean margin is r_better - r_worse).
  EXPECT_FLOAT_EQ(s.margin.item<float>(), 3.0f);
}

TEST(RewardLoss, CenteringAddsSquaredPairSums) {
  auto r = ranking_rewards();
  PairwiseLossOptions o;
  o.center_coefficient = 0.01;
  auto s = pairwise_loss_sums(r, ranking_pairs({0, 0, 0}), o);
  // c * sum over pairs of (r_b + r_w)^2 = 0.01 * (1.5^2 + 0.5^2 + 0^2) = 0.01 * 2.5 = 0.025.
  EXPECT_NEAR(s.loss.item<double>(), 0.98875195 + 0.025, 1e-6);
  s.loss.backward();
  // Extra gradient 2c(r_b + r_w) per pair: r0 gets 0.02 * (1.5 + 0.5) = 0.04 on top of
  // -0.55996619; r2 gets 0.02 * (0.5 + 0) = 0.01 on top of 0.45136694.
  auto g = r.grad().view({3});
  EXPECT_NEAR(g[0].item<double>(), -0.55996619 + 0.04, 1e-6);
  EXPECT_NEAR(g[2].item<double>(), 0.45136694 + 0.01, 1e-6);
}

TEST(RewardLoss, WrongOrderCountsAsWrongAndTiesToo) {
  // Rewards (0, 2) with pair (0 better than 1): d = -2, loss log(1 + e^2) = 2.12692801,
  // accuracy 0. A tie d = 0 gives log 2 = 0.69314718 and also counts as wrong.
  PairTensors p;
  p.better = torch::tensor({0, 0}, torch::kLong).view({2, 1});
  p.worse = torch::tensor({1, 1}, torch::kLong).view({2, 1});
  p.margin = torch::zeros({2, 1});
  p.mask = torch::ones({2, 1});
  auto r = torch::tensor({0.0f, 2.0f, 1.0f, 1.0f}).view({2, 2});
  auto s = pairwise_loss_sums(r, p, {});
  EXPECT_NEAR(s.loss.item<double>(), 2.12692801 + 0.69314718, 1e-6);
  EXPECT_FLOAT_EQ(s.correct.item<float>(), 0.0f);
}

}  // namespace
}  // namespace posttrain::reward
