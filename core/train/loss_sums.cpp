#include "core/train/loss_sums.h"

#include <set>

#include <ATen/ATen.h>

#include "common/error.h"

namespace posttrain::core {

namespace {

const std::set<std::string>& reserved() {
  static const std::set<std::string> names = {
      "step",      "loss",       "lr",         "learning_rate", "grad_norm",  "tokens_per_s",
      "mfu",       "event",      "epoch",      "num_tokens",    "train_loss", "train_runtime"};
  return names;
}

std::string keys_of(const std::map<std::string, at::Tensor>& m) {
  std::string s;
  for (const auto& [k, v] : m) s += k + ",";
  return s;
}

at::Tensor detached_double(const at::Tensor& t, const std::string& what) {
  if (!t.defined() || t.numel() != 1) {
    throw Error("loss " + what + ": expected a defined scalar tensor");
  }
  return t.detach().reshape({}).to(at::kDouble);
}

}  // namespace

bool is_reserved_metric(const std::string& name) {
  return reserved().count(name) > 0 || name.rfind("eval_", 0) == 0;
}

void LossNorms::add(const MicroBatch& mb) {
  terms += static_cast<double>(mb.num_terms);
  for (const auto& [k, n] : mb.counts) counts[k] += static_cast<double>(n);
}

std::vector<double> LossNorms::pack() const {
  std::vector<double> flat{terms};
  for (const auto& [k, n] : counts) flat.push_back(n);
  return flat;
}

void LossNorms::unpack(const std::vector<double>& flat) {
  terms = flat.at(0);
  size_t i = 1;
  for (auto& [k, n] : counts) n = flat.at(i++);
}

double LossNorms::count(const std::string& k, const std::string& what) const {
  auto it = counts.find(k);
  if (it == counts.end()) {
    throw Error(what + " is normalised by count '" + k + "', which the micro-batches lack");
  }
  if (it->second <= 0) throw Error(what + ": count '" + k + "' is 0 over the whole step");
  return it->second;
}

at::Tensor scaled_loss(const LossOutput& out, const LossNorms& norms) {
  at::Tensor loss = out.sum.to(at::kFloat) / norms.terms;
  for (const auto& [k, s] : out.extra_sums) {
    loss = loss + s.to(at::kFloat) / norms.count(k, "loss extra_sums '" + k + "'");
  }
  return loss;
}

void LossSums::add(const LossOutput& out, double weight) {
  const bool first = empty();
  if (!first && (keys_of(out.extra_sums) != keys_of(extra_) ||
                 keys_of(out.metric_sums) != keys_of(metrics_) ||
                 out.metric_norms != metric_norms_)) {
    throw Error("the loss returned extra sums {" + keys_of(out.extra_sums) + "} and metrics {" +
                keys_of(out.metric_sums) + "}, but earlier {" + keys_of(extra_) + "} and {" +
                keys_of(metrics_) + "}: every micro-batch must give the same names");
  }
  auto accumulate = [&](at::Tensor& into, const at::Tensor& t, const std::string& what) {
    at::Tensor v = detached_double(t, what) * weight;
    into = into.defined() ? into + v : v;
  };
  accumulate(main_, out.sum, "sum");
  for (const auto& [k, t] : out.extra_sums) accumulate(extra_[k], t, "extra_sums '" + k + "'");
  for (const auto& [k, t] : out.metric_sums) {
    if (first && is_reserved_metric(k)) {
      throw Error("loss metric '" + k + "': the name is the trainer's own (or starts eval_)");
    }
    accumulate(metrics_[k], t, "metric_sums '" + k + "'");
  }
  if (first) {
    for (const auto& [name, k] : out.metric_norms) {
      if (!out.metric_sums.count(name)) {
        throw Error("loss metric_norms names '" + name + "', which is not in metric_sums");
      }
    }
    metric_norms_ = out.metric_norms;
  }
  reduced_.clear();
}

double LossSums::main_sum() const { return main_.defined() ? main_.item<double>() : 0.0; }

std::string LossSums::signature() const {
  std::string s = "extra:" + keys_of(extra_) + " metrics:" + keys_of(metrics_) + " norms:";
  for (const auto& [name, k] : metric_norms_) s += name + "/" + k + ",";
  return s;
}

std::vector<double> LossSums::pack() const {
  if (!reduced_.empty()) return reduced_;
  std::vector<at::Tensor> parts;
  parts.push_back(main_.defined() ? main_ : at::zeros({}, at::kDouble));
  for (const auto& [k, t] : extra_) parts.push_back(t);
  for (const auto& [k, t] : metrics_) parts.push_back(t);
  // One device-to-host copy for all of them.
  at::Tensor all = at::stack(parts).cpu().contiguous();  // [1 + extras + metrics] float64
  const double* p = all.data_ptr<double>();
  return std::vector<double>(p, p + all.numel());
}

void LossSums::unpack(const std::vector<double>& flat) {
  if (flat.size() != 1 + extra_.size() + metrics_.size()) {
    throw Error("loss sums: cross-rank vector has the wrong length");
  }
  reduced_ = flat;
}

double LossSums::loss(const LossNorms& norms) const {
  const std::vector<double> v = pack();
  double loss = v[0] / norms.terms;
  size_t i = 1;
  for (const auto& [k, t] : extra_) {
    loss += v[i++] / norms.count(k, "loss extra_sums '" + k + "'");
  }
  return loss;
}

std::map<std::string, double> LossSums::metrics(const LossNorms& norms) const {
  const std::vector<double> v = pack();
  std::map<std::string, double> out;
  size_t i = 1 + extra_.size();
  for (const auto& [name, t] : metrics_) {
    auto it = metric_norms_.find(name);
    const double denom = it == metric_norms_.end()
                             ? norms.terms
                             : norms.count(it->second, "loss metric '" + name + "'");
    out[name] = v[i++] / denom;
  }
  return out;
}

}  // namespace posttrain::core
