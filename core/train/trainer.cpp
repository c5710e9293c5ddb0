// The shared training loop; see trainer.h for the contract. Training state (optimizer moments,
// RNG, data position) is in trainer_state.cpp.
#include "core/train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/cuda.h>
#include <torch/optim/adamw.h>
#include <unistd.h>

#include "common/error.h"
#include "common/progress.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/distributed/data_parallel.h"
#include "core/model/autocast_scope.h"
#include "core/train/cpu_parallel.h"
#include "core/train/fused_adamw.h"
#include "core/train/loss_sums.h"
#include "core/train/metrics.h"
#include "core/train/trainer_state.h"

namespace fs = std::filesystem;

namespace posttrain::core {

at::Device resolve_device(const std::string& name, int local_rank) {
  if (name == "cpu") return at::kCPU;
  if (name == "auto") {
    if (!torch::cuda::is_available()) return at::kCPU;
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  }
  if (!torch::cuda::is_available()) throw UsageError("training.device " + name + ": no CUDA device");
  if (name == "cuda") return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  return at::Device(name);
}

double train_flops_per_token(const LlamaConfig& c, int64_t seq_len) {
  const double h = c.hidden_size, hd = c.resolved_head_dim();
  const double attn = h * hd * (2.0 * c.num_attention_heads + 2.0 * c.num_key_value_heads);
  const double mlp = 3.0 * h * c.intermediate_size;
  // The LM head (tied or not) is a matmul per token; a reward model's score head has 1 output.
  const double head = h * (c.kind == ModelKind::kRewardModel ? 1.0 : c.vocab_size);
  const double matmul_params = c.num_hidden_layers * (attn + mlp) + head;
  // Scores and weighted values: 2 matmuls of T x hd per head per token, half of them masked.
  const double attention = 12.0 * c.num_hidden_layers * c.num_attention_heads * hd * seq_len / 2;
  return 6.0 * matmul_params + attention;
}

namespace {

MicroBatch to_device(MicroBatch mb, at::Device device) {
  for (auto& [name, t] : mb.tensors) t = t.to(device, /*non_blocking=*/true);
  return mb;
}

bool is_terminal() { return isatty(STDERR_FILENO) == 1; }

// Row slices past the first keep their own gradients until they are summed: at most this much.
constexpr int64_t kRowSplitMaxExtraBytes = int64_t{1} << 30;

}  // namespace

struct Trainer::Impl {
  at::Device device = at::kCPU;
  bool autocast = false;
  std::vector<std::string> names;      // HF names, same order as params
  std::vector<at::Tensor> params;
  std::unique_ptr<torch::optim::AdamW> optimizer;  // over all params, or `zero`'s owned ones
  std::unique_ptr<ZeroShard> zero;                 // ZeRO-1 ownership; null when replicated
  LrSchedule schedule;
  int64_t total_steps = -1;
  std::vector<int64_t> epoch_rows;     // rows of each epoch seen so far (lazily extended)
  std::unique_ptr<MetricsWriter> metrics;
  int rank = 0, world = 1;
  double flops_per_token = 0;
  int64_t last_tokens = 0, last_rows = 0;  // this rank's real tokens / rows in the last step
  int64_t tokens_seen = 0;                 // real tokens of all steps so far, all ranks
  LossNorms step_norms;                    // the current step's N and C_k over all ranks
  std::unique_ptr<LossSums> step_sums;     // its loss sums (this rank's, then all ranks')
  std::map<std::string, double> last_metrics;
  // Whether the ranks' count keys / loss names were checked to agree (once each).
  bool counts_checked = false, names_checked = false, eval_names_checked = false;
  int64_t param_bytes = 0;                 // of all parameters (bounds the row slices' memory)
};

Trainer::Trainer(TrainerOptions options, LlamaModel model, LossFn loss,
                 std::shared_ptr<RowDataset> train, std::shared_ptr<RowDataset> eval,
                 std::shared_ptr<DataParallel> dp)
    : options_(std::move(options)),
      model_(std::move(model)),
      loss_(std::move(loss)),
      train_(std::move(train)),
      eval_(std::move(eval)),
      dp_(std::move(dp)),
      impl_(std::make_unique<Impl>()) {
  if (options_.threads > 0) at::set_num_threads(static_cast<int>(options_.threads));
  if (dp_) {
    impl_->rank = dp_->rank();
    impl_->world = dp_->world_size();
  }
  for (auto& [name, t] : state_dict(*model_)) {
    (void)t;
    impl_->names.push_back(name);
  }
  // named_parameters in registration order; map HF names to the live parameters.
  auto named = model_->named_parameters(/*recurse=*/true);
  for (const auto& name : impl_->names) {
    const auto* p = named.find(name);
    if (!p) throw Error("trainer: model has no parameter " + name);
    impl_->params.push_back(*p);
  }
  impl_->device = impl_->params.front().device();
  for (const auto& p : impl_->params) impl_->param_bytes += p.numel() * p.element_size();
  const bool gpu = impl_->device.is_cuda();
  impl_->autocast = options_.precision == "bf16" || (options_.precision == "auto" && gpu);
  if (impl_->autocast && !gpu) {
    throw UsageError("training.precision bf16 needs a GPU (CPU training runs in float32)");
  }
  model_->set_activation_checkpointing(options_.activation_checkpointing);
  model_->train();

  // AdamW over this rank's parameters (all, or its ZeRO-1 shard); weight decay only on
  // matrices (norm weights are 1-D).
  if (options_.zero_stage != 0 && options_.zero_stage != 1) {
    throw UsageError("training.zero_stage must be 0 or 1, got " +
                     std::to_string(options_.zero_stage));
  }
  std::vector<at::Tensor> stepped = impl_->params;
  if (options_.zero_stage == 1 && dp_ && dp_->distributed()) {
    impl_->zero = std::make_unique<ZeroShard>(impl_->params, dp_);
    stepped = impl_->zero->owned_parameters();
  }
  std::vector<at::Tensor> decay, no_decay;
  for (const auto& p : stepped) (p.dim() >= 2 ? decay : no_decay).push_back(p);
  auto make_opts = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(options_.lr)
            .betas({options_.beta1, options_.beta2})
            .eps(options_.eps)
            .weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decay.empty()) groups.emplace_back(decay, make_opts(options_.weight_decay));
  if (!no_decay.empty()) groups.emplace_back(no_decay, make_opts(0.0));
  impl_->optimizer = std::make_unique<torch::optim::AdamW>(
      groups, torch::optim::AdamWOptions(options_.lr));
}

Trainer::~Trainer() = default;

const std::vector<at::Tensor>& Trainer::parameters() const { return impl_->params; }
torch::optim::AdamW& Trainer::optimizer() { return *impl_->optimizer; }
bool Trainer::zero_sharded() const { return impl_->zero != nullptr; }
const std::vector<std::string>& Trainer::parameter_names() const { return impl_->names; }

int64_t Trainer::global_batch_rows() const {
  return options_.micro_batch_size * options_.grad_accum_steps * impl_->world;
}

int64_t Trainer::total_steps() {
  if (impl_->total_steps >= 0) return impl_->total_steps;
  if (options_.max_steps > 0) {
    impl_->total_steps = options_.max_steps;
  } else {
    int64_t rows = 0;
    for (int64_t e = 0; e < options_.epochs; ++e) rows += train_->num_rows(e);
    impl_->total_steps = rows / global_batch_rows();
    if (impl_->total_steps == 0) {
      throw UsageError("the training data has " + std::to_string(rows) +
                       " rows, fewer than one global batch of " +
                       std::to_string(global_batch_rows()) +
                       " (micro_batch_size * grad_accum_steps * ranks)");
    }
  }
  impl_->schedule = LrSchedule{options_.lr, options_.warmup_steps, impl_->total_steps,
                               options_.decay, options_.min_lr_ratio};
  return impl_->total_steps;
}

double Trainer::epoch_at(int64_t rows) {
  for (int64_t e = 0;; ++e) {
    if (e == static_cast<int64_t>(impl_->epoch_rows.size())) {
      const int64_t n = train_->num_rows(e);
      if (n == 0) throw UsageError("the training data has no rows");
      impl_->epoch_rows.push_back(n);
    }
    const int64_t n = impl_->epoch_rows[e];
    if (rows <= n) return static_cast<double>(e) + static_cast<double>(rows) / n;
    rows -= n;
  }
}

std::vector<RowRef> Trainer::rows_of_step(int64_t step) {
  const int64_t per_rank = options_.micro_batch_size * options_.grad_accum_steps;
  int64_t pos = step * global_batch_rows() + impl_->rank * per_rank;
  std::vector<RowRef> out;
  int64_t epoch = 0, start = 0;  // `start`: stream index of epoch's first row
  for (int64_t i = 0; i < per_rank; ++i, ++pos) {
    while (true) {
      if (epoch == static_cast<int64_t>(impl_->epoch_rows.size())) {
        const int64_t n = train_->num_rows(epoch);
        if (n == 0) throw UsageError("the training data has no rows");
        impl_->epoch_rows.push_back(n);
      }
      if (pos < start + impl_->epoch_rows[epoch]) break;
      start += impl_->epoch_rows[epoch];
      ++epoch;
    }
    out.push_back({epoch, pos - start});
  }
  return out;
}

namespace {

// Throws unless every rank passes the same `signature` (a collective; run once per kind).
void check_same_on_ranks(DataParallel& dp, const std::string& signature, const std::string& what) {
  // 52 bits of the hash: exact in a double, so max(h) == h == -max(-h) only when all agree.
  const double h = static_cast<double>(std::hash<std::string>{}(signature) >> 12);
  if (dp.all_reduce_max(h) != h || dp.all_reduce_max(-h) != -h) {
    throw Error(what + " differ across ranks (this rank: " + signature + ")");
  }
}

// `values` summed over the ranks of `dp` in one collective.
std::vector<double> sum_over_ranks(DataParallel& dp, const std::vector<double>& values) {
  at::Tensor t = at::tensor(values, at::kDouble).to(dp.device());  // [n]
  dp.all_reduce_sum_({t});
  t = t.cpu().contiguous();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

std::string count_keys(const LossNorms& norms) {
  std::string s;
  for (const auto& [k, n] : norms.counts) s += k + ",";
  return s;
}

// Refuses to split `mb` by row unless it follows the row-split rule of batch.h.
void check_row_splittable(const MicroBatch& mb) {
  if (!mb.rows_independent) {
    throw UsageError(
        "the stage declared its rows independent (Trainer::set_rows_independent) but a "
        "micro-batch says its rows are not (MicroBatch::rows_independent): refusing to split it");
  }
  for (const auto& [name, t] : mb.tensors) {
    if (t.dim() > 0 && t.size(0) != mb.num_rows) {
      throw UsageError("micro-batch tensor '" + name + "' has " + std::to_string(t.size(0)) +
                       " entries in dim 0 for " + std::to_string(mb.num_rows) +
                       " rows: it cannot be split by row (see core/train/batch.h)");
    }
  }
}

}  // namespace

void Trainer::reduce_over_ranks(LossSums* sums, bool* checked) {
  if (!dp_) return;
  if (!*checked) {
    check_same_on_ranks(*dp_, sums->signature(), "the loss's extra sums and metrics");
    *checked = true;
  }
  sums->unpack(sum_over_ranks(*dp_, sums->pack()));
}

double Trainer::accumulate_gradients(int64_t step, int64_t* global_terms_out) {
  const auto rows = rows_of_step(step);
  const int64_t mbs = options_.micro_batch_size;
  std::vector<MicroBatch> micro;
  LossNorms norms;
  int64_t local_tokens = 0;
  for (int64_t k = 0; k < options_.grad_accum_steps; ++k) {
    std::vector<RowRef> part(rows.begin() + k * mbs, rows.begin() + (k + 1) * mbs);
    micro.push_back(train_->collate(part));
    if (rows_independent_) check_row_splittable(micro.back());
    if (k > 0 && micro.back().counts.size() != micro.front().counts.size()) {
      throw Error("micro-batches of step " + std::to_string(step + 1) +
                  " carry different count keys (see core/train/batch.h)");
    }
    norms.add(micro.back());
    local_tokens += micro.back().num_tokens;
  }
  if (dp_) {
    if (!impl_->counts_checked) {
      check_same_on_ranks(*dp_, count_keys(norms), "the micro-batches' count keys");
      impl_->counts_checked = true;
    }
    norms.unpack(sum_over_ranks(*dp_, norms.pack()));
  }
  if (norms.terms <= 0) throw Error("optimizer step " + std::to_string(step + 1) +
                                    " has no loss terms on any rank");
  *global_terms_out = static_cast<int64_t>(norms.terms);
  impl_->step_norms = norms;
  impl_->step_sums = std::make_unique<LossSums>();
  // Row slices (see set_rows_independent) when every thread gets at least one row and the
  // slices' own gradients fit kRowSplitMaxExtraBytes; else the ops split themselves.
  const int64_t threads = coarse_threads();
  const bool row_split = rows_independent_ && impl_->device.is_cpu() && threads > 1 &&
                         (threads - 1) * impl_->param_bytes <= kRowSplitMaxExtraBytes;
  for (auto& mb_cpu : micro) {
    if (row_split && mb_cpu.num_rows >= threads) {
      row_split_backward(mb_cpu, threads);
      continue;
    }
    MicroBatch mb = to_device(std::move(mb_cpu), impl_->device);
    LossOutput out;
    {
      AutocastScope autocast(impl_->device.type(), impl_->autocast);
      out = loss_(model_, mb);
    }
    scaled_loss(out, norms).backward();
    impl_->step_sums->add(out);
  }
  impl_->last_tokens = local_tokens;
  impl_->last_rows = static_cast<int64_t>(rows.size());
  return impl_->step_sums->main_sum();
}

void Trainer::row_split_backward(const MicroBatch& mb, int64_t parts) {
  // Slices of whole rows, one per thread: rows are independent, so the micro-batch's loss sums and
  // gradient are the sums of the slices' (up to float rounding order).
  const std::vector<int64_t> bounds = balanced_runs(std::vector<int64_t>(mb.num_rows, 1), parts);
  const int64_t n = static_cast<int64_t>(bounds.size()) - 1;
  const auto& params = impl_->params;
  const LossNorms& norms = impl_->step_norms;
  // Slice 0 accumulates into .grad as the unsplit path does; the others' gradients are kept
  // apart ([slice][param], undefined when unused) and added afterwards in slice order, so the
  // result does not depend on which thread finishes first.
  std::vector<std::vector<at::Tensor>> grads(n);
  std::vector<LossOutput> outs(n);
  std::vector<int64_t> slices(n + 1);  // run r of `slices` is slice r
  for (int64_t r = 0; r <= n; ++r) slices[r] = r;
  for_each_run(slices, [&](int64_t r, int64_t) {
    const int64_t b0 = bounds[r], rows = bounds[r + 1] - b0;
    MicroBatch part;
    part.num_rows = rows;
    part.rows_independent = true;
    for (const auto& [name, t] : mb.tensors) {
      part.tensors[name] = t.dim() > 0 ? t.narrow(0, b0, rows) : t;
    }
    LossOutput out = loss_(model_, part);
    const at::Tensor scaled = scaled_loss(out, norms);
    if (r == 0) {
      scaled.backward();
    } else {
      grads[r] = torch::autograd::grad({scaled}, params, {}, /*retain_graph=*/false,
                                       /*create_graph=*/false, /*allow_unused=*/true);
    }
    out.sum = out.sum.detach();
    for (auto& [k, t] : out.extra_sums) t = t.detach();
    outs[r] = std::move(out);
  });
  std::vector<int64_t> sizes;
  for (const auto& p : params) sizes.push_back(p.numel());
  for_each_run(balanced_runs(sizes, coarse_threads()), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      auto& p = const_cast<at::Tensor&>(params[i]);
      for (int64_t r = 1; r < n; ++r) {
        const at::Tensor& g = grads[r][i];
        if (!g.defined()) continue;
        if (p.grad().defined()) {
          p.mutable_grad().add_(g);
        } else {
          p.mutable_grad() = g;
        }
      }
    }
  });
  for (const auto& out : outs) impl_->step_sums->add(out);
}

std::pair<double, double> Trainer::train_step(int64_t step) {
  total_steps();
  const double lr = impl_->schedule.lr_at(step);
  for (auto& g : impl_->optimizer->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
  }
  int64_t global_terms = 0;
  accumulate_gradients(step, &global_terms);
  LossSums& sums = *impl_->step_sums;
  if (dp_) {
    reduce_over_ranks(&sums, &impl_->names_checked);
    dp_->all_reduce_gradients(impl_->params);
  }
  // Global gradient norm and clipping as torch.nn.utils.clip_grad_norm_ (scale by
  // max_norm / (norm + 1e-6) when that is below 1): one multi-tensor norm, and the scale handed
  // to the fused AdamW kernel as a divisor kept on the device, so clipping costs no extra pass
  // over the gradients. The norm is read back only after the optimizer's kernels are queued, so
  // a GPU never idles on this host sync.
  std::vector<at::Tensor> grads;
  for (const auto& p : impl_->params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  at::Tensor total, divisor;
  if (!grads.empty()) {
    std::vector<at::Tensor> norms;
    const int64_t threads = coarse_threads();
    if (impl_->device.is_cpu() && threads > 1) {
      // One parallel region for all the norms (see cpu_parallel.h), not one per tensor.
      norms.resize(grads.size());
      std::vector<int64_t> sizes;
      for (const auto& g : grads) sizes.push_back(g.numel());
      for_each_run(balanced_runs(sizes, threads), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) norms[i] = at::linalg_vector_norm(grads[i], 2);
      });
    } else {
      norms = at::_foreach_norm(grads, 2);
    }
    total = at::stack(norms).to(at::kFloat).norm(2);  // scalar
    if (options_.max_grad_norm > 0) {
      divisor = ((total + 1e-6) / options_.max_grad_norm).clamp_min(1.0);  // scalar float32
    }
  }
  // Under ZeRO-1 this steps only the owned parameters; their owners then broadcast them.
  fused_adamw_step(*impl_->optimizer, divisor);
  if (impl_->zero) impl_->zero->sync_parameters();
  // Every parameter's gradient, not only the optimizer's (under ZeRO-1 it holds a shard).
  for (auto& p : impl_->params) p.mutable_grad() = at::Tensor();
  const double grad_norm = total.defined() ? total.item<double>() : 0.0;
  impl_->last_metrics = sums.metrics(impl_->step_norms);
  return {sums.loss(impl_->step_norms), grad_norm};
}

const std::map<std::string, double>& Trainer::last_metrics() const { return impl_->last_metrics; }

LossReport Trainer::evaluate_report() {
  LossReport report;
  report.loss = std::numeric_limits<double>::quiet_NaN();
  if (!eval_) return report;
  const int64_t n = eval_->num_rows(0);
  auto [begin, end] = shard_range(n, impl_->rank, impl_->world);
  // A rank without eval rows (fewer rows than ranks) runs row 0 at weight 0 so that it learns
  // the loss's names and joins the cross-rank sum with zeros.
  const bool idle = begin == end && n > 0;
  if (idle) {
    begin = 0;
    end = 1;
  }
  at::NoGradGuard no_grad;
  model_->eval();
  LossNorms norms;
  LossSums sums;
  for (int64_t i = begin; i < end; i += options_.micro_batch_size) {
    std::vector<RowRef> part;
    for (int64_t r = i; r < std::min(end, i + options_.micro_batch_size); ++r) part.push_back({0, r});
    MicroBatch mb = to_device(eval_->collate(part), impl_->device);
    AutocastScope autocast(impl_->device.type(), impl_->autocast);
    sums.add(loss_(model_, mb), idle ? 0.0 : 1.0);
    if (idle) {
      for (const auto& [k, c] : mb.counts) norms.counts[k] += 0;  // the keys only
    } else {
      norms.add(mb);
    }
  }
  model_->train();
  if (dp_) {
    if (n == 0) return report;  // every rank has none
    norms.unpack(sum_over_ranks(*dp_, norms.pack()));
    reduce_over_ranks(&sums, &impl_->eval_names_checked);
  }
  if (norms.terms <= 0) return report;
  report.loss = sums.loss(norms);
  report.metrics = sums.metrics(norms);
  return report;
}

void Trainer::log_line(const nlohmann::json& line) {
  if (impl_->rank != 0) return;
  if (impl_->metrics) impl_->metrics->write(line);
}

namespace {

// ZeRO-1: the moments of every parameter, gathered from their owners onto rank 0's CPU and named
// as a replicated run names them (empty elsewhere). A collective: every rank calls it.
OptimizerMoments gather_sharded_moments(ZeroShard& zero, DataParallel& dp,
                                        torch::optim::AdamW& optimizer,
                                        const std::vector<std::string>& names,
                                        const std::vector<at::Tensor>& params) {
  const int64_t n = static_cast<int64_t>(params.size());
  std::vector<at::Tensor> avg(n), avg_sq(n);
  // has_state[i] = 1 when parameter i's owner holds state for it (all do once a step ran: the
  // all-reduce gives every parameter a gradient); the others send zeros that rank 0 drops.
  std::vector<int64_t> flags(n, 0);
  int64_t step = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (zero.owners()[i] != dp.rank()) continue;
    const auto* s = find_adamw_state(optimizer, params[i]);
    if (s == nullptr) {
      avg[i] = avg_sq[i] = at::zeros_like(params[i]);
      continue;
    }
    avg[i] = s->exp_avg();
    avg_sq[i] = s->exp_avg_sq();
    flags[i] = 1;
    step = std::max<int64_t>(step, s->step());
  }
  at::Tensor has_state = at::tensor(flags, at::kLong).to(dp.device());  // [n]
  dp.all_reduce_sum_({has_state});
  has_state = has_state.cpu();
  step = static_cast<int64_t>(dp.all_reduce_max(static_cast<double>(step)));
  const std::vector<at::Tensor> all_avg = zero.gather_to_root(avg, at::kCPU);
  const std::vector<at::Tensor> all_avg_sq = zero.gather_to_root(avg_sq, at::kCPU);
  OptimizerMoments out;
  out.adam_step = step;
  if (dp.rank() != 0) return out;
  const int64_t* has = has_state.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (has[i] == 0) continue;
    out.tensors.emplace_back(names[i] + ".exp_avg", all_avg[i]);
    out.tensors.emplace_back(names[i] + ".exp_avg_sq", all_avg_sq[i]);
  }
  return out;
}

// {"step", "epoch", "eval_loss", "eval_<metric>"...}; records the report in *result.
nlohmann::json eval_line(int64_t step, double epoch, const LossReport& report,
                         TrainResult* result) {
  result->last_eval_loss = report.loss;
  result->last_eval_metrics = report.metrics;
  nlohmann::json line = {{"step", step}, {"epoch", epoch}, {"eval_loss", report.loss}};
  for (const auto& [name, value] : report.metrics) line["eval_" + name] = value;
  return line;
}

}  // namespace

TrainingState Trainer::training_state(int64_t step) {
  TrainingState st;
  st.step = step;
  st.total_steps = total_steps();
  st.global_batch_rows = global_batch_rows();
  st.world_size = impl_->world;
  st.rows_consumed = step * global_batch_rows();
  st.schedule = impl_->schedule;
  st.run_info = run_info_;
  st.zero_stage = impl_->zero ? 1 : 0;
  // Hugging Face's fields (rank 0 only: the metrics file is its own).
  st.epoch = epoch_at(st.rows_consumed);
  st.num_train_epochs = options_.max_steps > 0
                            ? static_cast<int64_t>(std::ceil(epoch_at(st.total_steps *
                                                                      global_batch_rows())))
                            : options_.epochs;
  st.num_input_tokens_seen = impl_->tokens_seen;
  st.logging_steps = options_.log_every;
  st.eval_steps = options_.eval_every;
  st.save_steps = options_.save_every;
  st.train_batch_size = options_.micro_batch_size;
  st.log_history = hf_log_history((fs::path(options_.dir) / "metrics.jsonl").string(), step);
  return st;
}

nlohmann::json Trainer::final_line(const TrainResult& r, int64_t start, int64_t total,
                                   double seconds, double loss_sum) {
  const int64_t steps_run = total - start;
  const double per_s = seconds > 0 ? 1.0 / seconds : 0.0;
  nlohmann::json done = {{"event", "done"},
                         {"step", total},
                         {"steps", total},
                         {"resumed_from", start},
                         {"output", options_.dir},
                         {"epoch", epoch_at(total * global_batch_rows())},
                         {"num_tokens", impl_->tokens_seen},
                         {"train_runtime", seconds},
                         {"train_samples_per_second",
                          static_cast<double>(steps_run * global_batch_rows()) * per_s},
                         {"train_steps_per_second", static_cast<double>(steps_run) * per_s}};
  if (steps_run > 0) done["train_loss"] = loss_sum / static_cast<double>(steps_run);
  if (std::isfinite(r.last_loss)) {
    done["loss"] = r.last_loss;
    for (const auto& [name, v] : r.last_metrics) done[name] = v;
  }
  if (std::isfinite(r.last_eval_loss)) {
    done["eval_loss"] = r.last_eval_loss;
    for (const auto& [name, v] : r.last_eval_metrics) done["eval_" + name] = v;
  }
  return done;
}

void Trainer::save_checkpoint(int64_t step) {
  OptimizerMoments moments;
  if (impl_->zero) {
    moments = gather_sharded_moments(*impl_->zero, *dp_, *impl_->optimizer, impl_->names,
                                     impl_->params);
  } else if (impl_->rank == 0) {
    moments = optimizer_moments(*impl_->optimizer, impl_->names, impl_->params);
  }
  if (impl_->rank == 0) {
    TrainingState st = training_state(step);
    st.lr = impl_->schedule.lr_at(std::max<int64_t>(step - 1, 0));
    save_training_checkpoint(options_.dir, st, *model_, moments, save_extra_,
                             options_.keep_checkpoints);
  }
  if (dp_) dp_->barrier();
}

int64_t Trainer::try_resume() {
  if (!options_.resume) return 0;
  auto [dir, st] = resume_newest_checkpoint(
      options_.dir, model_.ptr().get(), impl_->optimizer.get(), impl_->names, impl_->params,
      {options_.resume_inexact, options_.resume_previous});
  if (dir.empty()) return 0;
  if (st.global_batch_rows != global_batch_rows()) {
    throw UsageError(dir + " was trained with a global batch of " +
                     std::to_string(st.global_batch_rows) + " rows, this run has " +
                     std::to_string(global_batch_rows()) +
                     "; resume with the same batch settings or set output.resume=false");
  }
  if (st.total_steps != total_steps()) {
    throw UsageError(dir + " belongs to a run of " + std::to_string(st.total_steps) +
                     " steps, this run has " + std::to_string(total_steps()) +
                     "; use the same settings or another output.dir");
  }
  if (dp_) dp_->broadcast_parameters(impl_->params);  // identical replicas whatever happened
  impl_->tokens_seen = st.num_input_tokens_seen;
  return st.step;
}

TrainResult Trainer::run() {
  TrainResult result;
  const int64_t total = total_steps();
  const bool main = impl_->rank == 0;
  if (main) fs::create_directories(options_.dir);
  const std::string done_marker = (fs::path(options_.dir) / "trainer_state.json").string();
  if (options_.resume && fs::exists(done_marker)) {
    TrainingState st = read_training_state(done_marker);
    if (st.step >= total && st.total_steps == total) {
      result.already_done = true;
      result.start_step = result.final_step = st.step;
      result.last_loss = result.last_eval_loss = std::numeric_limits<double>::quiet_NaN();
      result.summary = {{"event", "already_done"},
                        {"step", st.step},
                        {"steps", st.step},
                        {"resumed_from", st.step},
                        {"output", options_.dir}};
      return result;
    }
  }
  const int64_t start = try_resume();
  result.start_step = start;
  if (main) {
    impl_->metrics = std::make_unique<MetricsWriter>(
        (fs::path(options_.dir) / "metrics.jsonl").string(), start);
  }
  if (data_summary_.is_object()) {
    nlohmann::json line = data_summary_;
    line["event"] = "data";
    line["step"] = start;
    log_line(line);
  }
  const auto run_t0 = std::chrono::steady_clock::now();
  double loss_sum = 0;  // of the steps this process runs (HF's train_loss is their mean)
  const bool gpu = impl_->device.is_cuda();
  impl_->flops_per_token = train_flops_per_token(model_->config(), 1);
  const double peak = (options_.peak_tflops > 0 ? options_.peak_tflops : 989.0) * 1e12;
  const bool tty = main && is_terminal();
  Progress bar(label_, total, tty ? 1 : 0);
  bar.update(start);
  result.last_loss = result.last_eval_loss = std::numeric_limits<double>::quiet_NaN();
  for (int64_t step = start; step < total; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    // Tokens and mean row length for throughput/MFU, counted from the collated rows.
    auto [loss, grad_norm] = train_step(step);
    if (gpu) torch::cuda::synchronize();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    result.last_loss = loss;
    result.last_metrics = impl_->last_metrics;
    loss_sum += loss;
    const int64_t done = step + 1;
    if (!std::isfinite(loss)) {
      throw Error("loss is " + std::to_string(loss) + " at step " + std::to_string(done) +
                  " (lower optimizer.lr or check the data)");
    }
    int64_t tokens = impl_->last_tokens;
    if (dp_) tokens = dp_->all_reduce_sum(tokens);
    impl_->tokens_seen += tokens;
    if (done % options_.log_every == 0 || done == total) {
      // Hugging Face Trainer's and TRL's names (metrics.h).
      nlohmann::json line = {{"step", done},
                             {"loss", loss},
                             {"learning_rate", impl_->schedule.lr_at(step)},
                             {"grad_norm", grad_norm},
                             {"epoch", epoch_at(done * global_batch_rows())},
                             {"num_tokens", impl_->tokens_seen},
                             {"tokens_per_s", secs > 0 ? tokens / secs : 0.0}};
      for (const auto& [name, value] : impl_->last_metrics) line[name] = value;
      if (gpu) {
        const double seq = impl_->last_rows > 0 ? double(impl_->last_tokens) / impl_->last_rows : 1;
        const double fpt = train_flops_per_token(model_->config(), static_cast<int64_t>(seq));
        line["mfu"] = secs > 0 ? tokens * fpt / secs / (peak * impl_->world) : 0.0;
      }
      log_line(line);
      if (main && !tty) std::cout << line.dump() << std::endl;
    }
    char extra[96];
    std::snprintf(extra, sizeof extra, "loss %.4f lr %.2e", loss, impl_->schedule.lr_at(step));
    bar.update(done, extra);
    if (eval_ && options_.eval_every > 0 && done % options_.eval_every == 0 && done < total) {
      nlohmann::json line =
          eval_line(done, epoch_at(done * global_batch_rows()), evaluate_report(), &result);
      log_line(line);
      if (main && !tty) std::cout << line.dump() << std::endl;
    }
    if (options_.save_every > 0 && done % options_.save_every == 0 && done < total) {
      save_checkpoint(done);
    }
  }
  bar.finish();
  if (eval_) {
    nlohmann::json line = eval_line(total, epoch_at(total * global_batch_rows()),
                                    evaluate_report(), &result);
    if (start < total) log_line(line);
    if (main) std::cout << line.dump() << std::endl;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - run_t0).count();
  result.summary = final_line(result, start, total, seconds, loss_sum);
  if (start < total) log_line(result.summary);
  if (main) {
    save_final_model(options_.dir, *model_, options_.save_dtype == "bfloat16" ? at::kBFloat16
                                                                              : at::kFloat,
                     save_extra_);
    // As a checkpoint's, with the AdamW step count, last lr and RNG of the finished run.
    TrainingState st = training_state(total);
    st.lr = impl_->schedule.lr_at(std::max<int64_t>(total - 1, 0));
    st.adam_step = optimizer_moments(*impl_->optimizer, impl_->names, impl_->params).adam_step;
    st.rng_cpu_hex = cpu_rng_state_hex();
    write_training_state(done_marker, st);
  }
  if (dp_) dp_->barrier();
  result.final_step = total;
  return result;
}

}  // namespace posttrain::core
