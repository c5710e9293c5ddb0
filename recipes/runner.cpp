#include "recipes/runner.h"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>

#include "common/error.h"
#include "datastore/store.h"
#include "recipes/placeholders.h"
#include "recipes/stage_kinds.h"

namespace posttrain::recipes {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string self_executable() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw IoError("cannot find this program's path (/proc/self/exe): " + ec.message());
  return p.string();
}

// Runs `exe args...` with this process's standard streams and returns its exit status. The
// child is killed when this process dies (a SIGKILLed runner leaves no stage running behind).
int run_process(const std::string& exe, const std::vector<std::string>& args) {
  std::vector<std::string> argv_s = {exe};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::cout.flush();
  std::cerr.flush();
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw Error(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the runner died before prctl took effect
    // A bare name (a launcher such as srun) is looked up on PATH.
    ::execvp(exe.c_str(), argv.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw Error(std::string("waitpid failed: ") + std::strerror(errno));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

std::string command_line(const std::vector<std::string>& args) {
  std::string s = "posttrain";
  for (const auto& a : args) s += " " + a;
  return s;
}

// Numeric fields of each metrics.jsonl step and eval line, keyed by step; event lines (the data
// summary, the final line: core/train/metrics.h) are not per-step metrics.
void record_metrics(datastore::Store& store, int64_t run_id, const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) continue;
    if (j.contains("event")) continue;
    const int64_t step = j["step"].get<int64_t>();
    for (const auto& [name, value] : j.items()) {
      if (name == "step" || !value.is_number()) continue;
      store.add_metric(run_id, step, name, value.get<double>());
    }
  }
}

// The state that flows from stage to stage: what each placeholder stands for now.
struct FlowState {
  std::string policy, previous_policy, reward_model, store, run_dir;
  std::map<std::string, std::string> stage_out;  // this round's stages so far
};

class Runner {
 public:
  Runner(const Recipe& recipe, const RunOptions& options)
      : recipe_(recipe),
        out_(fs::absolute(options.out_dir).lexically_normal().string()),
        exe_(options.executable.empty() ? self_executable() : options.executable),
        rounds_(options.rounds > 0 ? options.rounds : recipe.num_rounds) {}

  RunSummary run() {
    check_recipe(recipe_, rounds_, /*skip_paths=*/false);
    fs::create_directories(out_);
    state_.run_dir = out_;
    state_.store = fs::path(recipe_.store).is_absolute()
                       ? recipe_.store
                       : (fs::path(out_) / recipe_.store).string();
    store_.emplace(datastore::Store::open(state_.store));
    run_id_ = store_->ensure_run(recipe_.name);
    start_policy();
    for (int r = 0; r < rounds_; ++r) run_round(r);
    RunSummary s;
    s.rounds = rounds_;
    s.stages_run = ran_;
    s.stages_skipped = skipped_;
    s.policy = state_.policy;
    s.store = state_.store;
    return s;
  }

 private:
  void start_policy() {
    if (!recipe_.init) {
      state_.policy = fs::absolute(recipe_.model_path).lexically_normal().string();
      auto tx = store_->transaction();
      store_->add_checkpoint(state_.policy, "start", 0);
      tx.commit();
      return;
    }
    const std::string dir = (fs::path(out_) / "base").string();
    state_.policy = dir;
    if (store_->stage_done(run_id_, -1, "init")) {
      ++skipped_;
      return;
    }
    fs::remove_all(dir);
    const json& init = *recipe_.init;
    std::vector<std::string> args = {"init", "--preset", init["preset"].get<std::string>(),
                                     "--output", dir};
    if (init.contains("seed")) args.insert(args.end(), {"--seed", init["seed"].dump()});
    if (init.contains("tokenizer")) {
      args.insert(args.end(), {"--tokenizer", init["tokenizer"].get<std::string>()});
    }
    std::cout << "== start: " << command_line(args) << std::endl;
    exec_or_throw(args, "the starting model (model.init)");
    auto tx = store_->transaction();
    store_->add_checkpoint(dir, "init", 0);
    store_->mark_stage_done(run_id_, -1, "init");
    tx.commit();
    ++ran_;
  }

  // Runs `posttrain args...`, through recipe.launcher when `launched` ("posttrain" there is this
  // program); a non-zero exit is an Error naming the command line.
  void exec_or_throw(const std::vector<std::string>& args, const std::string& what,
                     bool launched = false) {
    std::vector<std::string> argv;
    if (launched) {
      for (const auto& a : recipe_.launcher) argv.push_back(a == "posttrain" ? exe_ : a);
    }
    argv.push_back(exe_);
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string exe = argv.front();
    argv.erase(argv.begin());
    const int status = run_process(exe, argv);
    if (status != 0) {
      std::string line = launched ? exe : "posttrain";
      for (const auto& a : launched ? argv : args) line += " " + a;
      throw Error(what + ": `" + line + "` exited with status " + std::to_string(status) +
                  " (run the recipe again to retry this stage)");
    }
  }

  std::optional<std::string> lookup(const std::string& name, int round, const std::string& dir) {
    if (name == "policy") return state_.policy;
    if (name == "previous_policy") return state_.previous_policy;
    if (name == "reward_model") {
      if (state_.reward_model.empty()) return std::nullopt;
      return state_.reward_model;
    }
    if (name == "round") return std::to_string(round);
    if (name == "store") return state_.store;
    if (name == "out") return dir;
    if (name == "run_dir") return state_.run_dir;
    auto it = state_.stage_out.find(name.substr(6));
    if (it == state_.stage_out.end()) return std::nullopt;
    return it->second;
  }

  void run_round(int r) {
    state_.stage_out.clear();
    state_.previous_policy = state_.policy;
    const RoundSpec& spec = recipe_.round(r);
    std::cout << "== round " << r << " (" << spec.stages.size() << " stages)" << std::endl;
    for (size_t i = 0; i < spec.stages.size(); ++i) {
      run_stage(r, i, spec.stages[i]);
    }
    write_round_line(r);
  }

  void run_stage(int r, size_t index, const StageSpec& stage) {
    const StageKind& kind = stage_kind(stage.kind, stage.where);
    const std::string dir = (fs::path(out_) / ("round-" + std::to_string(r)) / stage.name).string();
    const std::string where = recipe_.source + " " + stage.where;
    const json config = substitute(
        kind.with_defaults(stage.config, where),
        [&](const std::string& name) { return lookup(name, r, dir); }, where);
    const std::string label = "round " + std::to_string(r) + " · " + stage.name + " (" +
                              stage.kind + ")";
    if (store_->stage_done(run_id_, r, stage.name)) {
      std::cout << label << ": done earlier -> " << dir << std::endl;
      finish_state(kind, stage, dir);
      ++skipped_;
      return;
    }
    // A stage cut short left a partial folder: clear it and run the stage from the start.
    fs::remove_all(dir);
    fs::remove(dir + ".config.json");
    fs::create_directories(dir);
    StageRun run{dir, state_.store, r};
    const auto t0 = std::chrono::steady_clock::now();
    for (const StageStep& step : kind.steps(config, run)) {
      if (step.in_process) {
        step.in_process(config, run);
        continue;
      }
      std::cout << label << ": " << command_line(step.args) << std::endl;
      exec_or_throw(step.args, label, kind.trains && !recipe_.launcher.empty());
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    auto tx = store_->transaction();
    if (!kind.produces.empty()) {
      std::vector<int64_t> parents;
      std::vector<double> weights;
      if (stage.kind == "average") {
        for (const auto& input : config["inputs"]) {
          auto ck = store_->checkpoint_by_path(
              fs::absolute(input.get<std::string>()).lexically_normal().string());
          if (ck) parents.push_back(ck->id);
        }
        if (config.contains("weights") && parents.size() == config["inputs"].size()) {
          for (const auto& w : config["weights"]) weights.push_back(w.get<double>());
        }
      } else if (auto ck = store_->checkpoint_by_path(state_.policy)) {
        parents.push_back(ck->id);
      }
      store_->add_checkpoint(dir, stage.kind, r, parents, weights);
    }
    record_evals(r, dir);
    if (kind.trains) {
      const int64_t stage_run =
          store_->ensure_run(recipe_.name + "/round-" + std::to_string(r) + "/" + stage.name);
      record_metrics(*store_, stage_run, dir + "/metrics.jsonl");
    }
    store_->mark_stage_done(run_id_, r, stage.name);
    tx.commit();
    ++ran_;
    finish_state(kind, stage, dir);
    std::cout << label << ": done in " << static_cast<int64_t>(seconds * 10) / 10.0 << " s -> "
              << dir << std::endl;
    (void)index;
  }

  // OUT/evals.json of an evaluating stage: each number (or {"value": x, "details": {...}})
  // becomes an eval of the policy it evaluated (the newest policy when the stage ran) for this
  // round.
  void record_evals(int r, const std::string& dir) {
    const std::string path = dir + "/evals.json";
    if (!fs::exists(path)) return;
    std::ifstream in(path);
    json evals = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!evals.is_object()) throw Error(path + ": expected a JSON object of eval values");
    std::optional<int64_t> policy_id;
    if (auto ck = store_->checkpoint_by_path(state_.policy)) policy_id = ck->id;
    for (const auto& [name, value] : evals.items()) {
      if (value.is_number()) store_->add_eval(policy_id, r, name, value.get<double>());
      if (value.is_object() && value.contains("value") && value["value"].is_number()) {
        store_->add_eval(policy_id, r, name, value["value"].get<double>(),
                         value.value("details", json()));
      }
    }
  }

  void finish_state(const StageKind& kind, const StageSpec& stage, const std::string& dir) {
    state_.stage_out[stage.name] = dir;
    if (kind.produces == "policy") state_.policy = dir;
    if (kind.produces == "reward_model") state_.reward_model = dir;
  }

  // OUT/rounds.jsonl: one line per round, rewritten whole so a resumed run has no repeats.
  void write_round_line(int r) {
    json line = {{"round", r}, {"policy", state_.policy}};
    for (const auto& e : store_->evals()) {
      if (e.round == r) line[e.name] = e.value;
    }
    round_lines_.resize(static_cast<size_t>(r) + 1);
    round_lines_[static_cast<size_t>(r)] = line;
    const std::string path = (fs::path(out_) / "rounds.jsonl").string();
    std::ofstream out(path + ".tmp", std::ios::trunc);
    for (const auto& l : round_lines_) out << l.dump() << "\n";
    out.close();
    fs::rename(path + ".tmp", path);
  }

  const Recipe& recipe_;
  std::string out_, exe_;
  int rounds_;
  std::optional<datastore::Store> store_;
  int64_t run_id_ = 0;
  FlowState state_;
  int ran_ = 0, skipped_ = 0;
  std::vector<json> round_lines_;
};

}  // namespace

RunSummary run_recipe(const Recipe& recipe, const RunOptions& options) {
  if (options.out_dir.empty()) throw UsageError("recipe run needs an output folder (--output)");
  return Runner(recipe, options).run();
}

}  // namespace posttrain::recipes
