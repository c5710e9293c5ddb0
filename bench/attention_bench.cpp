// bench_attention: forward+backward time of our CPU causal attention (kernels/causal_attention.h)
// beside ATen's scaled_dot_product_attention on the same float32 inputs, as the model called it
// before: is_causal with shared kv heads for one document per row, else kv heads copied out per
// query head and a dense [B, 1, T, T] causal, block-diagonal mask. Median of --iters runs of each,
// timed alternately after a warm-up; one JSON line per implementation, then the ratio.
//   bench_attention --batch 4 --heads 4 --kv-heads 2 --seq 256 --dim 32 --docs 1 --threads 1
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/causal_attention.h"

namespace {

struct Args {
  int64_t batch = 4, heads = 4, kv_heads = 2, seq = 256, dim = 32, docs = 1, iters = 9,
          threads = 1;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int64_t v = std::stoll(argv[i + 1]);
    if (k == "--batch") a.batch = v;
    else if (k == "--heads") a.heads = v;
    else if (k == "--kv-heads") a.kv_heads = v;
    else if (k == "--seq") a.seq = v;
    else if (k == "--dim") a.dim = v;
    else if (k == "--docs") a.docs = v;
    else if (k == "--iters") a.iters = v;
    else if (k == "--threads") a.threads = v;
    else {
      std::cerr << "unknown option " << k << "\n";
      std::exit(2);
    }
  }
  return a;
}

// Median seconds of each of two functions, timed alternately (a and b see the same load).
std::pair<double, double> median_seconds(int64_t iters, const std::function<void()>& a,
                                         const std::function<void()>& b) {
  a(), b();  // warm-up
  std::vector<double> ta, tb;
  auto time = [](const std::function<void()>& fn) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  for (int64_t i = 0; i < iters; ++i) ta.push_back(time(a)), tb.push_back(time(b));
  std::sort(ta.begin(), ta.end());
  std::sort(tb.begin(), tb.end());
  return {ta[ta.size() / 2], tb[tb.size() / 2]};
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  at::set_num_threads(static_cast<int>(a.threads));
  at::manual_seed(0);
  const int64_t B = a.batch, T = a.seq, nh = a.heads, nkv = a.kv_heads, D = a.dim;
  const auto q = at::randn({B, T, nh, D}).requires_grad_(true);   // [B, T, nh, D]
  const auto k = at::randn({B, T, nkv, D}).requires_grad_(true);  // [B, T, nkv, D]
  const auto v = at::randn({B, T, nkv, D}).requires_grad_(true);  // [B, T, nkv, D]
  const auto dout = at::randn({B, T, nh, D});
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  // Documents of equal length (the last takes the remainder).
  const auto ids = at::arange(T, at::kLong).div(std::max<int64_t>(1, T / a.docs), "floor")
                       .clamp_max(a.docs - 1)
                       .unsqueeze(0)
                       .expand({B, T})
                       .contiguous();  // [B, T]
  const auto starts = a.docs > 1 ? posttrain::kernels::document_starts(ids) : at::Tensor();
  const auto mask = at::ones({T, T}, at::kBool).tril().unsqueeze(0).logical_and(
                        ids.unsqueeze(2).eq(ids.unsqueeze(1))).unsqueeze(1);  // [B, 1, T, T]

  auto ours = [&] {
    posttrain::kernels::causal_attention(q, k, v, starts, scale).backward(dout);
  };
  auto aten = [&] {
    auto qt = q.transpose(1, 2), kt = k.transpose(1, 2), vt = v.transpose(1, 2);
    at::Tensor out;
    if (a.docs > 1) {
      kt = kt.unsqueeze(2).expand({B, nkv, nh / nkv, T, D}).reshape({B, nh, T, D});
      vt = vt.unsqueeze(2).expand({B, nkv, nh / nkv, T, D}).reshape({B, nh, T, D});
      out = at::scaled_dot_product_attention(qt, kt, vt, mask, 0.0, false);
    } else {
      out = at::scaled_dot_product_attention(qt, kt, vt, {}, 0.0, true, std::nullopt, nkv != nh);
    }
    out.transpose(1, 2).backward(dout);
  };
  const auto [t_ours, t_aten] = median_seconds(a.iters, ours, aten);
  for (const auto& [impl, t] : {std::pair<std::string, double>{"posttrain", t_ours},
                                {"aten_sdpa", t_aten}}) {
    std::cout << nlohmann::json{{"impl", impl}, {"batch", B},   {"heads", nh},
                                {"kv_heads", nkv}, {"seq", T},  {"dim", D},
                                {"docs", a.docs},  {"threads", a.threads},
                                {"median_s", t}}
              << "\n";
  }
  std::cout << nlohmann::json{{"speedup_vs_aten", t_aten / t_ours}} << "\n";
  return 0;
}
