// Attention over KV-cache pages (core/generate/paged_attention.h): the CPU loop path and the
// gathered path (per-run SDPA for chunks, one padded SDPA for all decode tokens) against a
// direct double-precision softmax(q.k) v over each token's visible positions.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/generate/paged_attention.h"

namespace posttrain::core::generate {
namespace {

TEST(GenerateAttention, LoopAndGatheredPathsMatchDirectAttention) {
  at::manual_seed(3);
  const int64_t nh = 4, nkv = 2, hd = 8, ps = 4, num_pages = 40;
  const double scale = 1.0 / std::sqrt(8.0);
  // NaN in every slot nobody writes: a path that reads an unwritten slot fails the test.
  auto keys = at::full({num_pages * ps, nkv, hd}, NAN, at::kFloat);
  auto values = at::full({num_pages * ps, nkv, hd}, NAN, at::kFloat);
  // Three sequences on scattered pages: a decode token at position 9, a prefill chunk of 6
  // tokens at positions 3..8, a decode token at position 0 (a one-token prompt).
  const std::vector<std::vector<int32_t>> pages = {{7, 2, 30}, {5, 11, 1}, {20}};
  const std::vector<AttentionRun> runs = {
      {0, 1, 9, &pages[0]}, {1, 6, 3, &pages[1]}, {7, 1, 0, &pages[2]}};
  const int64_t N = 8;
  auto q = at::randn({N, nh, hd});
  for (const auto& r : runs) {
    for (int64_t j = 0; j < r.start_pos + r.count; ++j) {
      const int64_t slot = int64_t{(*r.pages)[j / ps]} * ps + j % ps;
      keys[slot].copy_(at::randn({nkv, hd}));
      values[slot].copy_(at::randn({nkv, hd}));
    }
  }
  auto want = at::zeros({N, nh, hd}, at::kDouble);
  for (const auto& r : runs) {
    for (int64_t i = 0; i < r.count; ++i) {
      const int64_t t = r.first_token + i, pos = r.start_pos + i;
      for (int64_t h = 0; h < nh; ++h) {
        const int64_t kvh = h / (nh / nkv);
        std::vector<double> w(pos + 1);
        double m = -1e300, sum = 0;
        for (int64_t j = 0; j <= pos; ++j) {
          const int64_t slot = int64_t{(*r.pages)[j / ps]} * ps + j % ps;
          w[j] = scale *
                 (q[t][h].to(at::kDouble) * keys[slot][kvh].to(at::kDouble)).sum().item<double>();
          m = std::max(m, w[j]);
        }
        for (auto& x : w) sum += (x = std::exp(x - m));
        for (int64_t j = 0; j <= pos; ++j) {
          const int64_t slot = int64_t{(*r.pages)[j / ps]} * ps + j % ps;
          want[t][h] += values[slot][kvh].to(at::kDouble) * (w[j] / sum);
        }
      }
    }
  }
  for (bool cpu_loop : {true, false}) {
    const AttentionPlan plan(runs, ps, at::kCPU, at::kFloat, cpu_loop);
    EXPECT_EQ(plan.loop_path(0), cpu_loop);
    EXPECT_EQ(plan.batched(0), !cpu_loop);
    const auto got = paged_attention(q, keys, values, plan, scale);
    EXPECT_LT((got.to(at::kDouble) - want).abs().max().item<double>(), 1e-5)
        << (cpu_loop ? "loop" : "gathered");
  }
}

}  // namespace
}  // namespace posttrain::core::generate
