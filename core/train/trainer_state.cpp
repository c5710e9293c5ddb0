#include "core/train/trainer_state.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <unordered_set>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adamw.h>

#include "common/error.h"
#include "common/files.h"
#include "common/hex.h"
#include "core/checkpoint/hf_checkpoint.h"
#include "core/checkpoint/safetensors.h"
#include "core/train/fused_adamw.h"

namespace fs = std::filesystem;

namespace posttrain::core {

namespace {

// The CPU generator's state (a byte tensor) as hex, and back.
std::string state_to_hex(const at::Tensor& bytes) {
  at::Tensor b = bytes.contiguous();
  return to_hex(std::string_view(reinterpret_cast<const char*>(b.data_ptr<uint8_t>()), b.numel()));
}

at::Tensor state_from_hex(const std::string& hex, const std::string& source) {
  const std::optional<std::string> bytes = from_hex(hex);
  if (!bytes) throw InputError(Location{source, 0, "rng.cpu"}, "not an even-length hex string");
  at::Tensor t = at::empty({static_cast<int64_t>(bytes->size())}, at::kByte);
  std::memcpy(t.data_ptr<uint8_t>(), bytes->data(), bytes->size());
  return t;
}

const char* decay_name(DecayKind d) {
  switch (d) {
    case DecayKind::kCosine: return "cosine";
    case DecayKind::kLinear: return "linear";
    case DecayKind::kConstant: return "constant";
  }
  return "?";
}

}  // namespace

nlohmann::json TrainingState::to_json() const {
  return {{"global_step", step},
          {"max_steps", total_steps},
          {"epoch", epoch},
          {"num_train_epochs", num_train_epochs},
          {"num_input_tokens_seen", num_input_tokens_seen},
          {"logging_steps", logging_steps},
          {"eval_steps", eval_steps},
          {"save_steps", save_steps},
          {"train_batch_size", train_batch_size},
          {"log_history", log_history},
          {"global_batch_rows", global_batch_rows},
          {"world_size", world_size},
          {"data_position", {{"rows_consumed", rows_consumed}}},
          {"optimizer", {{"kind", "adamw"}, {"step", adam_step}, {"zero_stage", zero_stage}}},
          {"scheduler",
           {{"peak_lr", schedule.peak_lr},
            {"warmup_steps", schedule.warmup_steps},
            {"total_steps", schedule.total_steps},
            {"decay", decay_name(schedule.decay)},
            {"min_lr_ratio", schedule.min_lr_ratio},
            {"last_lr", lr}}},
          {"rng", {{"cpu", rng_cpu_hex}}},
          {"run_info", run_info}};
}

TrainingState TrainingState::from_json(const nlohmann::json& j, const std::string& source) {
  TrainingState s;
  try {
    // HF's names; "step" / "total_steps" in files written before them.
    s.step = j.at(j.contains("global_step") ? "global_step" : "step").get<int64_t>();
    s.total_steps = j.at(j.contains("max_steps") ? "max_steps" : "total_steps").get<int64_t>();
    s.num_input_tokens_seen = j.value("num_input_tokens_seen", int64_t{0});
    s.global_batch_rows = j.at("global_batch_rows").get<int64_t>();
    s.world_size = j.at("world_size").get<int64_t>();
    s.rows_consumed = j.at("data_position").at("rows_consumed").get<int64_t>();
    s.adam_step = j.at("optimizer").at("step").get<int64_t>();
    s.zero_stage = j.at("optimizer").value("zero_stage", int64_t{0});
    const auto& sch = j.at("scheduler");
    s.schedule.peak_lr = sch.at("peak_lr").get<double>();
    s.schedule.warmup_steps = sch.at("warmup_steps").get<int64_t>();
    s.schedule.total_steps = sch.at("total_steps").get<int64_t>();
    s.schedule.decay = parse_decay(sch.at("decay").get<std::string>());
    s.schedule.min_lr_ratio = sch.at("min_lr_ratio").get<double>();
    s.lr = sch.at("last_lr").get<double>();
    s.rng_cpu_hex = j.at("rng").at("cpu").get<std::string>();
    s.run_info = j.value("run_info", nlohmann::json::object());
  } catch (const nlohmann::json::exception& e) {
    throw InputError(Location{source, 0, ""}, std::string("malformed training state: ") + e.what());
  }
  return s;
}

void write_training_state(const std::string& path, const TrainingState& state) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << state.to_json().dump(2) << "\n";
    if (!out) throw IoError("cannot write " + tmp);
  }
  fs::rename(tmp, path);
}

std::string cpu_rng_state_hex() {
  return state_to_hex(at::detail::getDefaultCPUGenerator().get_state());
}

TrainingState read_training_state(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw IoError("cannot open " + path);
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(Location{path, 0, ""}, std::string("not valid JSON (") + e.what() + ")");
  }
  return TrainingState::from_json(j, path);
}

std::optional<int64_t> checkpoint_step(const std::string& name) {
  static const std::string kPrefix = "checkpoint-";
  if (name.size() <= kPrefix.size() || name.compare(0, kPrefix.size(), kPrefix) != 0) {
    return std::nullopt;
  }
  int64_t step = 0;
  for (size_t i = kPrefix.size(); i < name.size(); ++i) {
    const char c = name[i];
    if (c < '0' || c > '9') return std::nullopt;
    if (step > (INT64_MAX - (c - '0')) / 10) return std::nullopt;  // past INT64_MAX
    step = step * 10 + (c - '0');
  }
  return step;
}

std::vector<std::string> complete_checkpoints(const std::string& out_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  if (!fs::is_directory(out_dir)) return {};
  for (const auto& entry : fs::directory_iterator(out_dir)) {
    const auto step = checkpoint_step(entry.path().filename().string());
    if (!step || !entry.is_directory()) continue;
    if (!fs::exists(entry.path() / "trainer_state.json")) continue;
    found.emplace_back(*step, entry.path().string());
  }
  std::sort(found.rbegin(), found.rend());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::string newest_checkpoint(const std::string& out_dir) {
  auto all = complete_checkpoints(out_dir);
  return all.empty() ? "" : all.front();
}

OptimizerMoments optimizer_moments(torch::optim::AdamW& optimizer,
                                   const std::vector<std::string>& names,
                                   const std::vector<at::Tensor>& params) {
  OptimizerMoments out;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto* s = find_adamw_state(optimizer, params[i]);
    if (s == nullptr) continue;
    out.adam_step = std::max<int64_t>(out.adam_step, s->step());
    out.tensors.emplace_back(names[i] + ".exp_avg", s->exp_avg());
    out.tensors.emplace_back(names[i] + ".exp_avg_sq", s->exp_avg_sq());
  }
  return out;
}

void save_training_checkpoint(const std::string& out_dir, TrainingState state,
                              LlamaModelImpl& model, const OptimizerMoments& moments,
                              const std::function<void(const std::string&)>& save_extra,
                              int64_t keep) {
  const fs::path final_dir = fs::path(out_dir) / ("checkpoint-" + std::to_string(state.step));
  const fs::path tmp_dir = final_dir.string() + ".tmp";
  posttrain::remove_tree((tmp_dir).string());
  fs::create_directories(tmp_dir);
  save_model(model, tmp_dir.string(), at::kFloat);
  if (save_extra) save_extra(tmp_dir.string());

  save_safetensors((tmp_dir / "optimizer.safetensors").string(), moments.tensors, at::kFloat,
                   {{"adam_step", std::to_string(moments.adam_step)}});
  state.adam_step = moments.adam_step;
  state.rng_cpu_hex = cpu_rng_state_hex();
  write_training_state((tmp_dir / "trainer_state.json").string(), state);
  posttrain::remove_tree((final_dir).string());
  fs::rename(tmp_dir, final_dir);

  if (keep > 0) {
    std::vector<std::pair<int64_t, fs::path>> all;
    for (const auto& entry : fs::directory_iterator(out_dir)) {
      const auto step = checkpoint_step(entry.path().filename().string());
      if (entry.is_directory() && step) all.emplace_back(*step, entry.path());
    }
    std::sort(all.begin(), all.end());
    for (size_t i = 0; i + keep < all.size(); ++i) posttrain::remove_tree((all[i].second).string());
  }
}

TrainingState load_training_checkpoint(const std::string& dir, LlamaModelImpl* model,
                                       torch::optim::AdamW* optimizer,
                                       const std::vector<std::string>& names,
                                       const std::vector<at::Tensor>& params,
                                       const ResumeOptions& options) {
  TrainingState st = read_training_state((fs::path(dir) / "trainer_state.json").string());
  {
    at::NoGradGuard no_grad;
    load_weights(*model, dir);
  }
  const std::string opt_path = (fs::path(dir) / "optimizer.safetensors").string();
  SafetensorsFile file(opt_path);
  auto& table = optimizer->state();
  table.clear();
  std::unordered_set<const void*> stepped;  // the parameters this optimizer updates
  for (const auto& group : optimizer->param_groups()) {
    for (const auto& p : group.params()) stepped.insert(p.unsafeGetTensorImpl());
  }
  // Every entry must be a moment of one of the model's parameters.
  std::unordered_set<std::string> known;
  for (const auto& n : names) {
    known.insert(n + ".exp_avg");
    known.insert(n + ".exp_avg_sq");
  }
  std::vector<std::string> extra, missing;
  for (const auto& entry : file.names()) {
    if (!known.count(entry)) extra.push_back(entry);
  }
  for (size_t i = 0; i < params.size(); ++i) {
    if (stepped.count(params[i].unsafeGetTensorImpl()) == 0) continue;
    const std::string a = names[i] + ".exp_avg", b = names[i] + ".exp_avg_sq";
    if (!file.contains(a) || !file.contains(b)) {
      // After AdamW's first step every parameter it updates has both moments.
      if (st.adam_step > 0) missing.push_back(!file.contains(a) ? a : b);
      continue;
    }
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(st.adam_step);
    s->exp_avg(file.read(a, params[i].scalar_type(), params[i].device()));
    s->exp_avg_sq(file.read(b, params[i].scalar_type(), params[i].device()));
    if (s->exp_avg().sizes() != params[i].sizes() || s->exp_avg_sq().sizes() != params[i].sizes()) {
      throw InputError(Location{opt_path, 0, a}, "shape does not match the parameter");
    }
    table[params[i].unsafeGetTensorImpl()] = std::move(s);
  }
  if (!missing.empty() || !extra.empty()) {
    std::string what;
    if (!missing.empty()) {
      what += std::to_string(missing.size()) + " missing moment(s) (first: " + missing[0] +
              "; they would restart from zero)";
    }
    if (!extra.empty()) {
      what += std::string(what.empty() ? "" : " and ") + std::to_string(extra.size()) +
              " entr(ies) for parameters the model does not have (first: " + extra[0] + ")";
    }
    if (!options.allow_inexact) {
      throw InputError(Location{opt_path, 0, ""},
                       what + "; resuming would not continue the run exactly (set "
                              "output.resume_inexact=true to resume anyway)");
    }
    std::cerr << "warning: " << opt_path << ": " << what
              << "; the resume is NOT exact (output.resume_inexact)\n";
  }
  if (!st.rng_cpu_hex.empty()) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state_from_hex(st.rng_cpu_hex, dir + "/trainer_state.json"));
  }
  return st;
}

void save_final_model(const std::string& out_dir, LlamaModelImpl& model, at::ScalarType dtype,
                      const std::function<void(const std::string&)>& save_extra) {
  save_model(model, out_dir, dtype);
  if (save_extra) save_extra(out_dir);
}

std::pair<std::string, TrainingState> resume_newest_checkpoint(
    const std::string& out_dir, LlamaModelImpl* model, torch::optim::AdamW* optimizer,
    const std::vector<std::string>& names, const std::vector<at::Tensor>& params,
    const ResumeOptions& options) {
  const std::vector<std::string> all = complete_checkpoints(out_dir);
  for (size_t k = 0; k < all.size(); ++k) {
    try {
      return {all[k], load_training_checkpoint(all[k], model, optimizer, names, params, options)};
    } catch (const Error& e) {
      // Only a damaged checkpoint (bad or missing files) may be skipped, not a usage problem.
      if (!dynamic_cast<const InputError*>(&e) && !dynamic_cast<const IoError*>(&e)) throw;
      const std::string corrupt = all[k] + " is corrupt: " + e.what();
      if (k + 1 == all.size()) throw IoError(corrupt + "; there is no earlier complete checkpoint");
      if (!options.fall_back_to_previous) {
        throw IoError(corrupt + "; the previous complete checkpoint is " + all[k + 1] +
                      ": set output.resume_previous=true to resume from it (or remove " + all[k] +
                      ")");
      }
      std::cerr << "warning: " << corrupt << "; resuming from " << all[k + 1]
                << " (output.resume_previous)\n";
    }
  }
  return {"", TrainingState{}};
}

}  // namespace posttrain::core
