// The loss seam (core/train/batch.h) with a toy pairwise loss on the tiny model. Each row holds
// one pair as two packed documents, [prompt + chosen | prompt + rejected]; a response's score is
// the sum of its target tokens' log-probs, and per pair
//   loss_i = -log σ(β (s_chosen - s_rejected))          (main term, normalised per pair)
//   + α · NLL of the chosen response's target tokens       (extra term, per target token)
// with metrics accuracy (s_chosen > s_rejected), margin β (s_c - s_r) per pair, and nll per
// chosen target token. Checked against the same formulas evaluated on the whole global batch at
// once (an independent path: one forward, plain means): the step's loss, metrics and gradients;
// the metrics in metrics.jsonl and eval lines; 2 Gloo ranks equal 1 rank; and the refusals
// (MicroBatch::require, row-splitting pairs laid across rows).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/files.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/distributed/data_parallel.h"
#include "core/distributed/launcher.h"
#include "core/logprobs.h"
#include "core/train/metrics.h"
#include "core/train/trainer.h"
#include "train_test_util.h"

namespace fs = std::filesystem;

namespace posttrain::core {
namespace {

using testing::max_abs_diff;
using testing::tiny_model;

constexpr double kBeta = 0.5, kAlpha = 0.25;
constexpr int64_t kPrompt = 3, kResponse = 4, kDoc = kPrompt + kResponse;
constexpr const char* kWorkerDir = "POSTTRAIN_SEAM_WORKER_DIR";

struct Pair {
  std::vector<int64_t> prompt, chosen, rejected;
};

std::vector<Pair> make_pairs(int n, uint64_t seed) {
  std::mt19937 rng(seed);
  std::vector<Pair> out(n);
  for (auto& p : out) {
    for (int k = 0; k < kPrompt; ++k) p.prompt.push_back(rng() % 64);
    // chosen continues the prompt's pattern (next = prev + 1), rejected is noise.
    for (int k = 0; k < kResponse; ++k) p.chosen.push_back((p.prompt.back() + 1 + k) % 64);
    for (int k = 0; k < kResponse; ++k) p.rejected.push_back(rng() % 64);
  }
  return out;
}

// Pairs as rows. `across_rows`: instead, chosen documents in rows [0, B) and rejected ones in
// rows [B, 2B) (a layout whose rows are not independent).
class PairRows : public RowDataset {
 public:
  PairRows(std::vector<Pair> pairs, bool across_rows = false)
      : pairs_(std::move(pairs)), across_(across_rows) {}
  int64_t num_rows(int64_t) override { return static_cast<int64_t>(pairs_.size()); }
  MicroBatch collate(const std::vector<RowRef>& refs) override {
    const int64_t B = static_cast<int64_t>(refs.size());
    const int64_t rows = across_ ? 2 * B : B, T = across_ ? kDoc : 2 * kDoc;
    at::Tensor ids = at::zeros({rows, T}, at::kLong);
    at::Tensor tgt = at::full({rows, T}, kIgnoreTarget, at::kLong);
    at::Tensor pos = at::zeros({rows, T}, at::kLong), doc = at::zeros({rows, T}, at::kLong);
    at::Tensor seg = at::zeros({rows, T}, at::kLong);  // 1: chosen target, 2: rejected target
    auto put = [&](int64_t row, int64_t offset, int64_t d, const Pair& p, bool chosen) {
      std::vector<int64_t> seq = p.prompt;
      const auto& resp = chosen ? p.chosen : p.rejected;
      seq.insert(seq.end(), resp.begin(), resp.end());
      for (int64_t k = 0; k < kDoc; ++k) {
        ids[row][offset + k] = seq[k];
        pos[row][offset + k] = k;
        doc[row][offset + k] = d;
        if (k + 1 >= kPrompt && k + 1 < kDoc) {  // predicts a response token
          tgt[row][offset + k] = seq[k + 1];
          seg[row][offset + k] = chosen ? 1 : 2;
        }
      }
    };
    for (int64_t b = 0; b < B; ++b) {
      const Pair& p = pairs_[refs[b].row];
      if (across_) {
        put(b, 0, 0, p, true);
        put(B + b, 0, 0, p, false);
      } else {
        put(b, 0, 0, p, true);
        put(b, kDoc, 1, p, false);
      }
    }
    MicroBatch mb;
    mb.tensors = {{"input_ids", ids}, {"targets", tgt}, {"position_ids", pos},
                  {"document_ids", doc}, {"segments", seg}};
    mb.num_rows = rows;
    mb.num_terms = B;
    mb.counts = {{"target_tokens", B * kResponse}};
    mb.num_tokens = rows * T;
    mb.rows_independent = !across_;
    return mb;
  }

 private:
  std::vector<Pair> pairs_;
  bool across_;
};

// Per-pair scores s_chosen, s_rejected ([P] each) and the per-token log-probs of `b`.
struct Scores {
  at::Tensor chosen, rejected, chosen_nll;  // [P], [P], scalar
};
Scores scores(LlamaModel& m, const MicroBatch& b) {
  ForwardInputs in{b.require("input_ids"), b.require("position_ids"), b.require("document_ids"),
                   at::Tensor()};
  at::Tensor logp = target_logprobs(*m, m->hidden_states(in), b.require("targets"), 16);  // [R, T]
  const at::Tensor seg = b.require("segments");
  at::Tensor c = (logp * seg.eq(1)).sum(1), r = (logp * seg.eq(2)).sum(1);  // [R]
  if (!b.rows_independent) {  // chosen rows first, then rejected rows
    const int64_t P = c.size(0) / 2;
    return {c.slice(0, 0, P), r.slice(0, P), -c.slice(0, 0, P).sum()};
  }
  return {c, r, -c.sum()};
}

LossFn pair_loss() {
  return [](LlamaModel& m, const MicroBatch& b) {
    Scores s = scores(m, b);
    at::Tensor margin = kBeta * (s.chosen - s.rejected);  // [P]
    LossOutput out;
    out.sum = -at::log_sigmoid(margin).sum();
    out.extra_sums["target_tokens"] = kAlpha * s.chosen_nll;
    out.metric_sums["accuracy"] = (s.chosen > s.rejected).sum().to(at::kFloat).detach();
    out.metric_sums["margin"] = margin.sum().detach();
    out.metric_sums["nll"] = s.chosen_nll.detach();
    out.metric_norms["nll"] = "target_tokens";
    return out;
  };
}

// The reference: the formulas above as plain means over all `refs` in one forward.
struct Reference {
  at::Tensor loss;  // under autograd
  double accuracy, margin, nll;
};
Reference reference(LlamaModel& m, PairRows& data, const std::vector<RowRef>& refs) {
  MicroBatch b = data.collate(refs);
  Scores s = scores(m, b);
  at::Tensor margin = kBeta * (s.chosen - s.rejected);
  const double tokens = static_cast<double>(refs.size() * kResponse);
  Reference r;
  r.loss = -at::log_sigmoid(margin).mean() + kAlpha * s.chosen_nll / tokens;
  r.accuracy = (s.chosen > s.rejected).to(at::kDouble).mean().item<double>();
  r.margin = margin.mean().item<double>();
  r.nll = s.chosen_nll.item<double>() / tokens;
  return r;
}

std::string temp_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() /
                     ("posttrain_seam_" + name + "_" + std::to_string(::getpid()));
  posttrain::remove_tree(p.string());
  return p.string();
}

TrainerOptions options(const std::string& dir, int64_t micro, int64_t accum) {
  TrainerOptions o;
  o.dir = dir;
  o.lr = 1e-2;
  o.warmup_steps = 0;
  o.device = "cpu";
  o.max_steps = 3;
  o.micro_batch_size = micro;
  o.grad_accum_steps = accum;
  o.max_grad_norm = 0;  // no clipping: the gradient compared is the loss's own
  o.threads = 1;
  return o;
}

std::vector<RowRef> step0_rows(int64_t n) {
  std::vector<RowRef> refs;
  for (int64_t r = 0; r < n; ++r) refs.push_back({0, r});
  return refs;
}

TEST(LossSeam, StepLossMetricsAndGradientsEqualTheWholeBatchFormulas) {
  auto data = std::make_shared<PairRows>(make_pairs(8, 1));
  // 4 pairs per step in 2 micro-batches of 2: the trainer's division by the step's 4 pairs and
  // 16 chosen target tokens must give the plain means.
  const std::string dir = temp_dir("formula");
  Trainer t(options(dir, 2, 2), tiny_model(5), pair_loss(), data, nullptr);
  LlamaModel ref_model = tiny_model(5);
  Reference want = reference(ref_model, *data, step0_rows(4));  // the first 4 rows, file order
  want.loss.backward();
  int64_t terms = 0;
  t.accumulate_gradients(0, &terms);
  EXPECT_EQ(terms, 4);
  auto named = ref_model->named_parameters(/*recurse=*/true);
  std::vector<at::Tensor> ref_params;  // in the trainer's (Hugging Face) order
  for (const auto& name : t.parameter_names()) ref_params.push_back(*named.find(name));
  EXPECT_LT(max_abs_diff(t.parameters(), ref_params, true), 1e-6);
  for (const auto& p : t.parameters()) p.mutable_grad() = at::Tensor();
  auto [loss, norm] = t.train_step(0);
  EXPECT_NEAR(loss, want.loss.item<double>(), 1e-5);
  const auto& m = t.last_metrics();
  ASSERT_EQ(m.size(), 3u);
  EXPECT_NEAR(m.at("accuracy"), want.accuracy, 1e-9);
  EXPECT_NEAR(m.at("margin"), want.margin, 1e-5);
  EXPECT_NEAR(m.at("nll"), want.nll, 1e-5);
  posttrain::remove_tree(dir);
}

TEST(LossSeam, MetricsReachMetricsJsonlAndEvalLines) {
  const std::string dir = temp_dir("lines");
  TrainerOptions o = options(dir, 2, 1);
  o.max_steps = 4;
  o.eval_every = 2;
  auto eval = std::make_shared<PairRows>(make_pairs(3, 9));
  Trainer t(o, tiny_model(2), pair_loss(), std::make_shared<PairRows>(make_pairs(8, 1)), eval);
  // The eval formulas on the untrained model, over all 3 eval pairs.
  LlamaModel before = tiny_model(2);
  Reference want;
  {
    at::NoGradGuard no_grad;
    before->eval();
    want = reference(before, *eval, step0_rows(3));
  }
  const LossReport first = t.evaluate_report();
  EXPECT_NEAR(first.loss, want.loss.item<double>(), 1e-5);
  EXPECT_NEAR(first.metrics.at("accuracy"), want.accuracy, 1e-9);
  EXPECT_NEAR(first.metrics.at("margin"), want.margin, 1e-5);
  EXPECT_NEAR(first.metrics.at("nll"), want.nll, 1e-5);
  TrainResult r = t.run();
  std::vector<nlohmann::json> lines;  // step and eval lines (not the final event line)
  for (const auto& l : read_metrics((fs::path(dir) / "metrics.jsonl").string())) {
    if (!is_event_line(l)) lines.push_back(l);
  }
  int steps = 0, evals = 0;
  for (const auto& l : lines) {
    if (l.contains("eval_loss")) {
      ++evals;
      for (const char* k : {"eval_accuracy", "eval_margin", "eval_nll"}) {
        EXPECT_TRUE(l.contains(k)) << l.dump();
      }
      EXPECT_GE(l["eval_accuracy"].get<double>(), 0.0);
      EXPECT_LE(l["eval_accuracy"].get<double>(), 1.0);
    } else {
      ++steps;
      for (const char* k : {"loss", "accuracy", "margin", "nll", "learning_rate", "grad_norm"}) {
        EXPECT_TRUE(l.contains(k)) << l.dump();
      }
    }
  }
  EXPECT_EQ(steps, 4);
  EXPECT_EQ(evals, 2);  // after step 2 and at the end
  EXPECT_EQ(lines.back()["eval_margin"].get<double>(), r.last_eval_metrics.at("margin"));
  EXPECT_EQ(lines[lines.size() - 2]["accuracy"].get<double>(), r.last_metrics.at("accuracy"));
  posttrain::remove_tree(dir);
}

TEST(LossSeam, RefusesMissingTensorsAndRowSplittingPairsAcrossRows) {
  MicroBatch mb;
  mb.tensors["input_ids"] = at::zeros({1, 2}, at::kLong);
  EXPECT_TRUE(mb.require("input_ids").defined());
  EXPECT_FALSE(mb.get("targets").defined());
  try {
    mb.require("targets");
    ADD_FAILURE() << "a missing tensor was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("'targets'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("input_ids"), std::string::npos) << e.what();
  }
  // The split layout trains as long as nobody asks to split it by row, and equals the
  // one-row-per-pair layout (scores on the same documents, only their rows differ).
  auto across = std::make_shared<PairRows>(make_pairs(8, 1), /*across_rows=*/true);
  Trainer ok(options(temp_dir("across"), 2, 1), tiny_model(1), pair_loss(), across, nullptr);
  Trainer same(options(temp_dir("within"), 2, 1), tiny_model(1), pair_loss(),
               std::make_shared<PairRows>(make_pairs(8, 1)), nullptr);
  auto [loss_ok, norm_ok] = ok.train_step(0);
  auto [loss_same, norm_same] = same.train_step(0);
  EXPECT_NEAR(loss_ok, loss_same, 1e-5);
  EXPECT_NEAR(norm_ok, norm_same, 1e-4);
  for (const auto& [name, v] : same.last_metrics()) {
    EXPECT_NEAR(ok.last_metrics().at(name), v, 1e-5) << name;
  }
  // ...but a stage that declares its rows independent is refused for it.
  Trainer bad(options(temp_dir("bad"), 2, 1), tiny_model(1), pair_loss(), across, nullptr);
  bad.set_rows_independent(true);
  EXPECT_THROW(bad.train_step(0), UsageError);
}

// ------------------------------------------------------------------------ 2 ranks vs 1 rank

// One rank of the 2-rank run: 1 pair per micro-batch, 2 micro-batches (4 pairs per step in all);
// DIR/eval_pairs holds the number of eval pairs.
TEST(LossSeamWorker, Train) {
  const char* dir_env = std::getenv(kWorkerDir);
  if (dir_env == nullptr) GTEST_SKIP() << "runs only as a rank of a parent test";
  const fs::path dir(dir_env);
  const DistEnv env = DistEnv::from_environment();
  const std::string log = (dir / ("rank" + std::to_string(env.rank) + "_stdout.txt")).string();
  ASSERT_NE(std::freopen(log.c_str(), "w", stdout), nullptr);
  auto dp = DataParallel::init(env, at::kCPU, std::chrono::seconds(60));
  TrainerOptions o = options((dir / "out").string(), 1, 2);
  o.eval_every = 2;
  int eval_pairs = 0;
  std::ifstream(dir / "eval_pairs") >> eval_pairs;
  Trainer t(o, tiny_model(7), pair_loss(), std::make_shared<PairRows>(make_pairs(12, 3)),
            std::make_shared<PairRows>(make_pairs(eval_pairs, 4)), dp);
  t.run();
  std::vector<at::Tensor> flat;
  for (const auto& p : t.parameters()) flat.push_back(p.detach().reshape({-1}).to(at::kDouble));
  testing::write_flat(dir / ("rank" + std::to_string(env.rank) + "_params.bin"), at::cat(flat));
}

// 3 eval pairs split 2 + 1 over the ranks; 1 eval pair leaves rank 1 without eval rows (it
// joins the sums with zeros).
TEST(LossSeam, TwoGlooRanksEqualOneRank) {
  for (int eval_pairs : {3, 1}) {
    SCOPED_TRACE("eval pairs " + std::to_string(eval_pairs));
    const fs::path work = temp_dir("ranks");
    fs::create_directories(work);
    std::ofstream(work / "eval_pairs") << eval_pairs;
    ::setenv(kWorkerDir, work.c_str(), 1);
    LaunchOptions launch;
    launch.nproc = 2;
    launch.omp_threads = 1;
    launch.quiet = true;
    const std::string self = fs::read_symlink("/proc/self/exe").string();
    const LaunchResult lr =
        launch_local(launch, {self, "--gtest_filter=LossSeamWorker.Train", "--gtest_brief=1"});
    ::unsetenv(kWorkerDir);
    ASSERT_EQ(lr.exit_code, 0) << lr.message;
    // One process: 2 pairs per micro-batch, 2 micro-batches; the same 4 pairs per step.
    TrainerOptions o = options((work / "one").string(), 2, 2);
    o.eval_every = 2;
    Trainer one(o, tiny_model(7), pair_loss(), std::make_shared<PairRows>(make_pairs(12, 3)),
                std::make_shared<PairRows>(make_pairs(eval_pairs, 4)), nullptr);
    one.run();
    auto training_lines = [](const fs::path& path) {
      std::vector<nlohmann::json> out;  // without the final event line (it holds timings)
      for (const auto& l : read_metrics(path.string())) {
        if (!is_event_line(l)) out.push_back(l);
      }
      return out;
    };
    const auto want = training_lines(work / "one" / "metrics.jsonl");
    const auto got = training_lines(work / "out" / "metrics.jsonl");
    ASSERT_EQ(got.size(), want.size());
    ASSERT_EQ(want.size(), 5u);  // 3 steps, eval after step 2 and at the end
    for (size_t i = 0; i < want.size(); ++i) {
      for (const auto& [key, value] : want[i].items()) {
        if (key == "tokens_per_s") continue;
        ASSERT_TRUE(got[i].contains(key)) << i << " " << key;
        EXPECT_NEAR(got[i][key].get<double>(), value.get<double>(), 1e-5) << i << " " << key;
      }
    }
    std::vector<at::Tensor> flat;
    for (const auto& p : one.parameters()) flat.push_back(p.detach().reshape({-1}).to(at::kDouble));
    const at::Tensor mine = at::cat(flat);
    for (int r = 0; r < 2; ++r) {
      const at::Tensor theirs =
          testing::read_flat(work / ("rank" + std::to_string(r) + "_params.bin"));
      EXPECT_LT((theirs - mine).abs().max().item<double>(), 1e-5) << "rank " << r;
    }
    posttrain::remove_tree(work.string());
  }
}

}  // namespace
}  // namespace posttrain::core
